#!/usr/bin/env node
// Compares `herald sms info --batch` with Twilio's calculator
// (sms-segments-calculator, pinned in package.json) on generated messages:
// random GSM-7 and UCS-2 text, extension characters and emoji at the segment
// boundaries, ZWJ sequences, flags, combining marks, Smart Encoding characters.
// Usage: node oracle.js HERALD_BIN [RANDOM_COUNT]   (ORACLE_SEED picks the sequence)
'use strict';
const { spawnSync } = require('child_process');
const { SegmentedMessage } = require('sms-segments-calculator');

const herald = process.argv[2];
const randomCount = parseInt(process.argv[3] || '1200', 10);
let seed = parseInt(process.env.ORACLE_SEED || '20240601', 10) >>> 0;
function rnd(n) { // xorshift32: reproducible without dependencies
  seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
  return seed % n;
}
const pick = (a) => a[rnd(a.length)];
const chars = (s) => [...s];

const GSM_BASIC = chars('@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡' +
  'ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà\n\r');
const ASCII_WORDS = ['Hi', 'sale', 'today', 'only', '50%', 'off', 'at', 'Herald', 'Store', 'use', 'code',
  'SAVE20', 'www.example.com/p', 'Reply', 'STOP', 'to', 'opt', 'out', 'Thanks!', 'your', 'order', '#1234'];
const GSM_EXT = chars('^{}\\[~]|€\f');
const UCS_BMP = chars('çÀÂÊÎÔÛëïÿœЖЯжяΑβγ中文字日本語한국어ㄱㅏ안녕אבגعربيहिन्दीก्ไทย☺★♥✓™©®•…‘’“”–—\t`');
const EMOJI = ['😀', '😂', '🎉', '👍', '👍🏻', '👍🏿', '❤️', '✌️', '✌🏽', '☝', '👨‍👩‍👧‍👦', '👩‍❤️‍💋‍👨',
  '🏳️‍🌈', '👁️‍🗨️', '🧑‍💻', '👩‍🚀', '🇺🇸', '🇬🇧', '🇫🇷', '🇩🇪🇯🇵', '🇦', '1️⃣', '#️⃣', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', '🤷‍♀️', '🙋🏽‍♂️', '🏻', '🦄', '🫠'];
const COMBINING = ['e\u0301', 'a\u0300\u0301', 'n\u0303', 'o\u0308\u0304\u0323', 'x\u20dd', '\u0301', 'Ä\u0308',
  '\u0600\u0661', '\u0915\u094d\u0937', 'ก\u0e33', 'ᄀ\u1161\u11a8', '\u200d', 'a\u200d', '\ufe0f', 'e\u0301\u0301\u0301\u0301'];
const CTRL = ['\u0000', '\u0003', '\u0007', '\u001b', '\u007f', '\u0085', '\u00ad', '\r\n', '\n', '\r', '\u2028', '\u200b', '\ufeff'];
const SMART = ['«', '»', '“', '”', '‘', '’', '′', '–', '—', '…', '\u00a0', '\u2009', '\u3000', '\t', '`', '½', '¼',
  '÷', '•', '\u2060', '\u200b', '\ufeff', 'ｈ', 'Ａ', '＠', '＄', '\u02c6', '\u0302', '\u0303', '～', '‼', '\u2001',
  '\u0080', '\u0313', 'e\u0302', '\u0010', '\u0000', '\u2022', '〜', '｛', '｝', '［', '］', '＼'];
const ALL = [GSM_BASIC, GSM_BASIC, GSM_EXT, UCS_BMP, EMOJI, COMBINING, CTRL, SMART];

function gsmText(n) { const a = []; for (let i = 0; i < n; i++) a.push(pick(GSM_BASIC)); return a.join(''); }
function wordsText(n) { let s = ''; while (s.length < n) s += (s ? ' ' : '') + pick(ASCII_WORDS); return s.slice(0, n); }
function mixText(n, pools) { const a = []; for (let i = 0; i < n; i++) a.push(pick(pick(pools))); return a.join(''); }

const cases = [];
// Boundaries: GSM filler of length L-1..L+1 with an extension char or emoji at the edge.
for (const L of [0, 1, 69, 70, 71, 134, 152, 153, 154, 159, 160, 161, 199, 200, 201, 305, 306, 307, 459, 460, 1600]) {
  const long = L > 400;
  for (let d = -1; d <= 1; d++) {
    const base = wordsText(Math.max(0, L + d));
    cases.push(base);
    const pool = [pick(GSM_EXT), '€', '{}', pick(EMOJI), pick(COMBINING), pick(SMART), '🇺🇸🇺🇸'];
    const inserts = long ? [pool[0], pool[3]] : [pool[rnd(3)], pool[3 + rnd(4)], pick(pool)];
    for (const ins of inserts) {
      const positions = long ? [base.length, 152, 153, 160]
        : [base.length, base.length - 1, 152, 153, 159, 160, 66, 67, 69, 70].filter((p) => p >= 0);
      for (const pos of positions) {
        if (pos <= base.length) cases.push(base.slice(0, pos) + ins + base.slice(pos));
      }
    }
  }
}
// UCS-2 runs sized around 66/67/70 units with a multi-unit character at the edge.
for (const L of [60, 64, 65, 66, 67, 68, 69, 70, 71, 132, 133, 134, 135, 200, 201]) {
  const filler = mixText(L, [UCS_BMP]).replace(/[\t`‘’“”–—…•]/g, 'ж');
  for (const e of EMOJI.concat(COMBINING)) cases.push(filler + e, e + filler, filler.slice(0, 66) + e + filler.slice(66));
}
// Quirks of the calculator's grapheme splitter, and clusters longer than a segment.
const huge = 'e' + '\u0301'.repeat(80);
for (const q of ['🇺🇸\u0301\u0301', 'a\u0301\u200d👦🏻', '👍\u0301\u0301🏻', '👍\u0301🏻', '\u0600🇺🇸🇺', '\u0600\u0301🏻',
  '\u200d🏻', '🇺🇸🇺\u0301🏻', 'ᄀᄀ\u1161\u11a8\u11a8가\u11a8각\u11a8', '\r\n\u0301', '\r\u0301\n', huge, huge + huge,
  '\u0301'.repeat(75), '👨‍👩‍👧‍👦'.repeat(12)]) {
  for (const pre of ['', 'ж', wordsText(60), wordsText(66), wordsText(69), wordsText(150)]) cases.push(pre + q, pre + q + 'x' + q);
}
// Random texts of every flavour and length.
for (let k = 0; k < randomCount; k++) {
  const kind = rnd(6);
  const n = pick([5, 20, 40, 60, 70, 100, 120, 150, 160, 170, 300, 700]) + rnd(20);
  if (kind === 0) cases.push(gsmText(n));
  else if (kind === 1) cases.push(mixText(n, [GSM_BASIC, GSM_EXT]));
  else if (kind === 2) cases.push(mixText(n, [GSM_BASIC, GSM_BASIC, GSM_BASIC, SMART]));
  else if (kind === 3) cases.push(wordsText(n) + pick(EMOJI));
  else cases.push(mixText(Math.ceil(n / 2), ALL));
}

function reference(msg, smart) {
  const m = new SegmentedMessage(msg, 'auto', smart);
  return `${m.encodingName} ${m.segmentsCount} ${m.numberOfCharacters}`;
}

let passed = 0, failed = 0;
const input = cases.map((c) => JSON.stringify(c)).join('\n') + '\n';
for (const smart of [false, true]) {
  const args = ['sms', 'info', '--batch'].concat(smart ? ['--smart'] : []);
  const r = spawnSync(herald, args, { input, maxBuffer: 64 << 20, encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`herald ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    process.exit(1);
  }
  const lines = r.stdout.split('\n');
  cases.forEach((c, i) => {
    const want = reference(c, smart);
    const got = (lines[i] || '').split(' ').slice(0, 3).join(' ');
    if (got === want) {
      passed++;
    } else {
      failed++;
      if (failed <= 20) console.log(`MISMATCH smart=${smart} ${JSON.stringify(c)}: herald "${got}" calculator "${want}"`);
    }
  });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
