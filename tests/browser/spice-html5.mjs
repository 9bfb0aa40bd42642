// Drives Debian's spice-html5 (/usr/share/spice-html5) in headless Debian chromium against a
// Spice server on 127.0.0.1 (WebSocket on the Spice port). Run by spice-bridge/tests/spice_html5.rs:
//
//   node spice-html5.mjs view PORT EXPECTED.rgb WIDTH HEIGHT OUTDIR CLICK_X CLICK_Y
//     loads spice_auto.html?host=127.0.0.1&port=PORT, waits until the primary canvas
//     (spice_surface_0) equals EXPECTED pixel for pixel (or 20 s); EXPECTED is raw RGB (3 bytes
//     a pixel) or a binary PPM (P6, maxval 255, as tests/lib/qxlpic.py writes),
//     writes OUTDIR/spice-html5.png and OUTDIR/canvas.rgb, then types 'a' and clicks at
//     (CLICK_X, CLICK_Y) in the canvas. Prints one JSON line {"diff": N, ...}.
//   node spice-html5.mjs wrong-ticket PORT PASSWORD
//     loads the page with that password and waits for spice-html5's "Permission denied." prompt.
//     Prints {"denied": true|false}.
//
// Exits non-zero on any failure to run (no chromium, no spice-html5, page errors are reported).
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = '/usr/share/spice-html5';
const CHROMIUM = '/usr/bin/chromium';
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };

function fail(msg) {
  console.error(`spice-html5.mjs: ${msg}`);
  process.exit(2);
}

for (const p of [path.join(ROOT, 'spice_auto.html'), CHROMIUM]) {
  if (!fs.existsSync(p)) fail(`${p} is missing (run images/install-host-deps.sh)`);
}

// ES modules do not load from file://, so the client is served over a tiny local HTTP server.
function serve() {
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = path.join(ROOT, path.normalize(rel));
    if (!file.startsWith(ROOT + '/') || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// The pixels of a raw RGB file or of a binary PPM of WIDTH x HEIGHT.
function rgbOf(buf, width, height) {
  if (buf.subarray(0, 2).toString() !== 'P6') return buf;
  // header: "P6" W H 255, whitespace-separated (no comments in the files we read), one byte after
  const fields = [];
  let at = 2;
  while (fields.length < 3) {
    while (/\s/.test(String.fromCharCode(buf[at]))) at++;
    let start = at;
    while (!/\s/.test(String.fromCharCode(buf[at]))) at++;
    fields.push(Number(buf.subarray(start, at).toString()));
  }
  const [w, h, max] = fields;
  if (w !== width || h !== height || max !== 255) fail(`PPM is ${w}x${h}/${max}, want ${width}x${height}/255`);
  return buf.subarray(at + 1, at + 1 + w * h * 3);
}

const [mode, port, ...rest] = process.argv.slice(2);
const http_server = await serve();
const base = `http://127.0.0.1:${http_server.address().port}/spice_auto.html?host=127.0.0.1&port=${port}`;
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const log = [];
page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));

async function done(result, code = 0) {
  if (process.env.SPICE_HTML5_LOG) result.log = log;
  console.log(JSON.stringify(result));
  await browser.close();
  http_server.close();
  process.exit(code);
}

try {
  if (mode === 'wrong-ticket') {
    const [password] = rest;
    let denied = false;
    page.on('dialog', async (d) => {
      denied = denied || d.type() === 'prompt';
      await d.dismiss().catch(() => {});
    });
    await page.goto(`${base}&password=${encodeURIComponent(password)}`);
    const t = Date.now();
    while (!denied && Date.now() - t < 10000) await page.waitForTimeout(100);
    await done({ denied, log });
  } else if (mode === 'view') {
    const [expectedPath, w, h, outdir, cx, cy] = rest;
    const width = Number(w), height = Number(h);
    const expected = rgbOf(fs.readFileSync(expectedPath), width, height);
    await page.goto(base);
    const canvas = page.locator('#spice_surface_0');
    await canvas.waitFor({ state: 'attached', timeout: 20000 });
    let diff = -1, first = -1, pixels = null, size = null;
    const t = Date.now();
    while (Date.now() - t < 20000) {
      const got = await page.evaluate(() => {
        const c = document.getElementById('spice_surface_0');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return { w: c.width, h: c.height, rgba: Array.from(d) };
      });
      size = [got.w, got.h];
      if (got.w === width && got.h === height) {
        pixels = Buffer.alloc(width * height * 3);
        diff = 0;
        first = -1;
        for (let i = 0; i < width * height; i++) {
          for (let k = 0; k < 3; k++) pixels[i * 3 + k] = got.rgba[i * 4 + k];
          if (pixels[i * 3] !== expected[i * 3] || pixels[i * 3 + 1] !== expected[i * 3 + 1]
              || pixels[i * 3 + 2] !== expected[i * 3 + 2]) {
            if (first < 0) first = i;
            diff++;
          }
        }
        if (diff === 0) break;
      }
      await page.waitForTimeout(200);
    }
    fs.mkdirSync(outdir, { recursive: true });
    if (pixels) fs.writeFileSync(path.join(outdir, 'canvas.rgb'), pixels);
    await canvas.screenshot({ path: path.join(outdir, 'spice-html5.png') });
    // input: a key (KeyA, set-1 scancode 0x1e), then a left click at (cx, cy) in the canvas
    await canvas.focus();
    await page.keyboard.press('KeyA');
    // the page draws a border around the canvas: aim inside it (content box)
    const box = await page.evaluate(() => {
      const c = document.getElementById('spice_surface_0');
      const r = c.getBoundingClientRect();
      return { x: r.left + c.clientLeft, y: r.top + c.clientTop, width: c.clientWidth, height: c.clientHeight };
    });
    await page.mouse.move(box.x + Number(cx), box.y + Number(cy));
    await page.waitForTimeout(200);
    await page.mouse.down();
    await page.waitForTimeout(100);
    await page.mouse.up();
    await page.waitForTimeout(500);
    await done({ diff, first, size, box });
  } else {
    fail(`unknown mode ${mode}`);
  }
} catch (e) {
  log.push(`error: ${e.stack || e}`);
  await done({ error: String(e), log }, 1);
}
