// The test corpus for the reference comparisons: hand-picked strings covering what the
// Qwen2/Qwen3, Llama 3 and GPT-2 split patterns distinguish, plus seeded random strings drawn
// from a pool of tricky characters. No lone surrogates (not valid UTF-8, so not valid input).
"use strict";

const fixed = [
  "", "a", " ", "  ", "\n", "\n\n\n", "\t", "\r\n", " \n ", "Hello world", " Hello world",
  "Hello, world! How are you?", "The quick brown fox jumps over the lazy dog.",
  // numbers
  "1", "12", "123", "1234", "12345678901234567890", "3.14159", "-42", "1,000,000", "x=10+20",
  "version 2.0.1-rc3", "0x1F600", "1e-10", "٣٤٥ ١٢", "Ⅻ ½ ²",
  // contractions and case-insensitive ones
  "don't", "I'm", "you're", "we've", "they'll", "he'd", "it's", "IT'S", "DON'T", "We'Ve",
  "'s 't 're 've 'm 'll 'd", "rock'n'roll", "''quoted''", "O'Neil's",
  // accents, NFC vs NFD (combining marks need composition)
  "café", "cafe\u0301", "naïve résumé", "nai\u0308ve", "Å", "A\u030A", "\u1E9B\u0323",
  "Straße", "ÆØÅ æøå", "Ελληνικά κείμενα", "Русский текст, ёжик", "עברית", "العربية",
  "हिन्दी", "ภาษาไทย", "한국어 텍스트", "Tiếng Việt có dấu",
  // CJK
  "日本語のテキスト", "中文文本，标点符号。", "混合English和中文", "ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ",
  // emoji (multi-byte, ZWJ sequences, flags, skin tones)
  "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵🇫🇷", "I ❤️ pizza 🍕!", "emoji😀in😀words",
  // whitespace runs
  "a  b   c    d", "trailing   ", "   leading", "\t\tindent", "mixed \t \n whitespace",
  "line1\nline2\n\nline4", "a\r\nb\r\n", "  \n  \n", "x \u00A0 y", "\u3000全角空格",
  "tabs\tand\tmore\ttabs", "    ", " \t ",
  // code
  "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
  "const s = `template ${x}`;", "#include <stdio.h>\nint main() { return 0; }",
  "if x != y && z >= 3 || !w:", "{\"key\": [1, 2, {\"nested\": null}]}", "<div class=\"a\">hi</div>",
  "SELECT * FROM t WHERE id = 42;", "$ ls -la | grep foo > out.txt 2>&1",
  "    indented code\n\tand tabs\n", "a==b!==c===d", "path/to/file.txt", "https://example.com/a?b=c&d=e",
  // punctuation runs
  "...", "!!!???", "---", "***bold***", "(parens) [brackets] {braces}", "«guillemets» „quotes“",
  "a.b.c", "$100.00", "50% off!", "@user #tag", "\\escaped\\", "~`^",
  // special tokens inline
  "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "text<|endoftext|>more",
  "<|im_start|><|im_end|>", "<|im_start|", "<|im_start|>>", "<<|im_end|>", "<think>\nhmm\n</think>\n\nok",
  "<|endoftext|><|endoftext|>", "a <|im_end|> b", "<tool_call>{}</tool_call>",
  // misc control and format characters
  "zero\u200Bwidth", "soft\u00ADhyphen", "rtl\u200Fmark", "bell\u0007", "nul\u0000byte", "del\u007F",
  "\u2028line sep\u2029para", "\u0085next line", "para \u0085next", "mongolian\u180Evowel", " \u180E x", "\uFEFFbom start", "x\uFEFF y", "\uFFFD replacement", "\uE000 private use",
  "\u{10FFFF}", "\u{1F9D1}\u200D\u{1F4BB}", "é".repeat(50), "a".repeat(300), " ".repeat(100),
  "\n".repeat(20), "ab".repeat(200), "1".repeat(40),
];

// Characters the random strings are made of: ASCII classes, whitespace kinds, letters with and
// without combining marks, digits of other scripts, CJK, emoji, apostrophes.
const pool = [
  "a", "b", "Z", "s", "t", "'", "'", "0", "7", " ", " ", " ", "\n", "\t", "\r", ".", ",", "!", "?",
  "-", "_", "(", ")", "{", "}", "<", ">", "|", "\"", "#", "é", "e\u0301", "\u0301", "ñ", "ß",
  "Ω", "д", "字", "日", "本", "の", "。", "，", "😀", "👍", "\u200D", "\u00A0", "\u3000", "٣",
  "½", "ſ", "K", "İ", "ﬁ", "\u2028", "ً", "\uFE0F", "\u{1F3FD}", "\u00AD", "Ⅻ", "²", "ǅ", "ʰ",
  "\u0E31", "\u1100", "\u1161", "\u11A8", "…", "\u180E", "\u3000", "\u2009", "<|im_start|>",
  "<|endoftext|>", "<|im_end|>", "<think>",
];

// xorshift32: deterministic given the seed, so a failure can be replayed.
function randomStrings(seed, count, maxLen) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x;
  };
  const out = [];
  for (let i = 0; i < count; ++i) {
    const n = 1 + (next() % maxLen);
    let s = "";
    for (let k = 0; k < n; ++k) s += pool[next() % pool.length];
    out.push(s);
  }
  return out;
}

module.exports = { fixed, randomStrings };
