import { AgentVariants } from "agent-variants";
import OpenAI from "openai";

export const client = new AgentVariants({ baseUrl: process.env.AGENT_VARIANTS_URL!, apiKey: process.env.AGENT_VARIANTS_KEY });
const llm = new OpenAI(); // reads OPENAI_API_KEY

export async function answer(userId: string, question: string): Promise<string> {
  const config = await client.resolve("support-bot", { subject: userId }); // from memory: microseconds
  const prompt = config.render({ question }); // its templates, the variables checked as the service checks them
  const started = performance.now();
  const reply = await llm.chat.completions.create(config.openaiChatParams(prompt), config.clientOptions());
  client.report("support-bot", {
    config,
    subject: userId,
    input_tokens: reply.usage?.prompt_tokens,
    output_tokens: reply.usage?.completion_tokens,
    latency_ms: performance.now() - started,
    success: reply.choices[0]?.finish_reason === "stop",
  });
  return reply.choices[0]?.message.content ?? "";
}
