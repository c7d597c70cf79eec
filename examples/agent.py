import os
import time

from agent_variants import AgentVariants
from openai import OpenAI

client = AgentVariants(os.environ["AGENT_VARIANTS_URL"], os.environ["AGENT_VARIANTS_KEY"])
llm = OpenAI()  # reads OPENAI_API_KEY


def answer(user_id: str, question: str) -> str:
    config = client.resolve("support-bot", subject=user_id)  # from memory: microseconds
    prompt = config.render(question=question)  # its templates, the variables checked as the service checks them
    started = time.perf_counter()
    reply = llm.with_options(**config.client_options()).chat.completions.create(**config.openai_chat_kwargs(prompt))
    client.report(
        "support-bot",
        config=config,
        subject=user_id,
        input_tokens=reply.usage.prompt_tokens,
        output_tokens=reply.usage.completion_tokens,
        latency_ms=(time.perf_counter() - started) * 1000,
        success=reply.choices[0].finish_reason == "stop",
    )
    return reply.choices[0].message.content
