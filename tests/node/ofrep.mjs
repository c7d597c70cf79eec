// The OpenFeature JS server SDK with its OFREP provider, against a running agent-variants.
//
//   node ofrep.mjs <base url> <api key> '<cases as JSON>'
//
// Each case is {"flag", "context"}: the script evaluates it with `getObjectDetails` and
// prints one JSON line per case: {"flag", "value", "reason", "variant", "flagMetadata",
// "errorCode", "errorMessage"}. tests/system/test_ofrep_sdks.py runs it and checks them.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const [baseUrl, key, casesJson] = process.argv.slice(2);
const cases = JSON.parse(casesJson);
const headers = key ? [['Authorization', `Bearer ${key}`]] : [];
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers }));
const client = OpenFeature.getClient();
const DEFAULT = { fallback: true };
for (const { flag, context } of cases) {
  const details = await client.getObjectDetails(flag, DEFAULT, context);
  console.log(
    JSON.stringify({
      flag,
      value: details.value,
      reason: details.reason,
      variant: details.variant ?? null,
      flagMetadata: details.flagMetadata ?? {},
      errorCode: details.errorCode ?? null,
      errorMessage: details.errorMessage ?? null,
    }),
  );
}
await OpenFeature.close();
