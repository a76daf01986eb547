// Drives a distillery gateway with the official OpenAI Node SDK and prints
// what it saw as one JSON object, which gateway's TestOpenAINodeSDK checks.
//
// Env: OPENAI_BASE_URL (the server's /v1 URL), OPENAI_SDK_DIR (the folder
// where the openai package was installed with npm install --prefix).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(path.join(process.env.OPENAI_SDK_DIR, 'noop.js'));
const mod = await import(pathToFileURL(require.resolve('openai')).href);
const OpenAI = mod.OpenAI ?? mod.default?.OpenAI ?? mod.default;

const client = new OpenAI({ baseURL: process.env.OPENAI_BASE_URL, apiKey: 'x', maxRetries: 0, timeout: 20000 });
const model = 'test-model';
const pkg = JSON.parse(readFileSync(path.join(process.env.OPENAI_SDK_DIR, 'node_modules', 'openai', 'package.json'), 'utf8'));
const out = { sdkVersion: pkg.version };

// Chat, whole reply, with log probabilities and a stop string.
const chat = await client.chat.completions.create({
  model,
  messages: [{ role: 'system', content: 'be kind' }, { role: 'user', content: 'hello brave new world' }],
  logprobs: true,
  top_logprobs: 2,
  stop: ['new'],
});
out.chat = {
  id: chat.id,
  object: chat.object,
  content: chat.choices[0].message.content,
  role: chat.choices[0].message.role,
  finish: chat.choices[0].finish_reason,
  logprobs: chat.choices[0].logprobs.content.map((l) => ({
    token: l.token, logprob: l.logprob, bytes: l.bytes, top: l.top_logprobs.map((t) => t.token),
  })),
  usage: chat.usage,
};

// Chat, streamed.
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: 'user', content: 'stream these four words' }],
  stream: true,
  stream_options: { include_usage: true },
  logprobs: true,
});
const s = { text: '', roles: [], finish: null, usage: null, chunks: 0, logprobTokens: [] };
for await (const chunk of stream) {
  s.chunks++;
  if (chunk.usage) s.usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta.role) s.roles.push(c.delta.role);
    if (c.delta.content) s.text += c.delta.content;
    if (c.finish_reason) s.finish = c.finish_reason;
    for (const l of c.logprobs?.content ?? []) s.logprobTokens.push(l.token);
  }
}
out.stream = s;

// Legacy completions.
const cmpl = await client.completions.create({ model, prompt: 'one two three', max_tokens: 2, logprobs: 1 });
out.completion = {
  object: cmpl.object, text: cmpl.choices[0].text, finish: cmpl.choices[0].finish_reason,
  tokens: cmpl.choices[0].logprobs.tokens, usage: cmpl.usage,
};

// Models.
const models = [];
for await (const m of client.models.list()) models.push(m.id);
out.models = models;
out.retrieved = (await client.models.retrieve(model)).id;

// Errors surface as APIError with the status and the error object.
async function apiError(fn) {
  try {
    await fn();
    return { thrown: false };
  } catch (e) {
    return {
      thrown: true, isAPIError: e instanceof OpenAI.APIError, status: e.status ?? null,
      code: e.code ?? null, param: e.param ?? null, type: e.type ?? null, message: e.message,
    };
  }
}
out.badRequest = await apiError(() => client.chat.completions.create({
  model, messages: [{ role: 'user', content: 'x' }], temperature: 5,
}));
out.notFound = await apiError(() => client.chat.completions.create({
  model: 'no-such-model', messages: [{ role: 'user', content: 'x' }],
}));
out.midStream = await apiError(async () => {
  const st = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'a b FAILLATE' }], stream: true,
  });
  for await (const _ of st) { /* drain */ }
});

console.log(JSON.stringify(out));
