// Drives the wsgate dashboard in Debian's chromium through playwright-core
// (no browser download): log in through the form, read the backend cards and
// their CPU/RAM/connection bars, watch a killed backend's migration appear,
// drain the other backend from its card.
//
//   node dashboard.mjs <gateway-url> <key> <outdir>
//
// tests/integration/test_dashboard_browser.py runs it and talks to it by
// lines. On stdout the script says where it is:
//
//   STEP <name>         a step passed (a screenshot outdir/dashboard-N-<name>.png
//                       was saved)
//   WAITING kill        the cards are checked: kill a backend now, then write
//                       "KILLED <id> <clients>" on stdin (clients: the sessions
//                       it had)
//   WAITING drain       the migration is shown; write "GO" on stdin to have
//                       the other backend drained from its card
//   DONE                everything passed; the exit status is 0
//
// Any failure prints "FAIL <why>" on stderr and exits 1. So does, at the
// end, any console error, uncaught page error, request to a host other than
// the gateway, failed request or HTTP error answer (each is printed as
// "PROBLEM <step>: <what>" on stderr as it comes); the only one expected is
// the 401 of the page's own check for a session before the login. The figures the bars must show come from the
// DASHBOARD_EXPECT environment variable (JSON: {"servers": {id: {cpu,
// ramUsage, ramTotal, active, max}}, "drain": id, "afterKill": {...}});
// without it they are read from the gateway's /api/stats, and the backend
// not killed is drained.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { join } from "node:path";

const [url, key, outdir] = process.argv.slice(2);
if (!url || !key || !outdir) {
  console.error("usage: node dashboard.mjs <gateway-url> <key> <outdir>");
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TOTAL_MS = Number(process.env.DASHBOARD_TIMEOUT_MS || 120000);
const MIGRATION_MS = 10000; // the page refreshes every 5 s
const origin = new URL(url).origin;

// Green below 60 %, yellow below 85 %, red from 85 % (seed 000's
// "green -> yellow -> red" bars; the figures used stay far from the edges).
const colour = (p) => (p < 60 ? "green" : p < 85 ? "yellow" : "red");

let browser = null;
const problems = [];
const log = (...a) => console.log(...a);

let currentPage = null; // for a screenshot of what a failure looked like

async function fail(why) {
  console.error(`FAIL ${why}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join("\n  ")}`);
  try {
    if (currentPage) {
      await currentPage.screenshot({ path: join(outdir, "dashboard-failed.png"), fullPage: true,
        timeout: 5000 });
    }
  } catch {
    // no screenshot then
  }
  try {
    if (browser) await browser.close();
  } catch {
    // already gone
  }
  process.exit(1);
}

const watchdog = setTimeout(() => fail(`did not finish within ${TOTAL_MS} ms`), TOTAL_MS);

// Lines from the test, on stdin.
const lines = [];
const lineWaiters = [];
createInterface({ input: process.stdin }).on("line", (line) => {
  const w = lineWaiters.shift();
  if (w) w(line);
  else lines.push(line);
});
const nextLine = () =>
  lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => lineWaiters.push(r));

let shot = 0;
async function step(page, name) {
  shot += 1;
  await page.screenshot({ path: join(outdir, `dashboard-${shot}-${name}.png`), fullPage: true });
  log(`STEP ${name}`);
}

function check(ok, why) {
  if (!ok) throw new Error(why);
}

// Polls fn (returning a truthy value when satisfied) until the deadline;
// the error names what was last seen.
async function until(what, fn, ms = 8000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = "not yet";
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: ${last}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// What one card shows: status and, per meter, the fill's width (style and
// as rendered) and colour class.
async function readCard(page, id) {
  const card = page.locator(`#servers .server[data-id="${id}"]`);
  if ((await card.count()) !== 1) return null;
  return card.evaluate((el) => {
    const meters = {};
    for (const m of el.querySelectorAll(".meter")) {
      const fill = m.querySelector(".fill");
      const bar = m.querySelector(".bar").getBoundingClientRect();
      const classes = [...fill.classList].filter((c) => c !== "fill");
      meters[m.dataset.kind] = {
        style: parseFloat(fill.style.width),
        rendered: bar.width ? (100 * fill.getBoundingClientRect().width) / bar.width : -1,
        classes,
        background: getComputedStyle(fill).backgroundColor,
        text: m.querySelector(".meter-value").textContent,
      };
    }
    const drain = el.querySelector("button.drain");
    return {
      status: el.querySelector(".status").textContent.trim().toLowerCase(),
      meters,
      drainVisible: !!drain && drain.offsetParent !== null,
    };
  });
}

function expectedMeters(s) {
  const ram = (100 * s.ramUsage) / s.ramTotal;
  const conns = (100 * s.active) / s.max;
  return { cpu: s.cpu, ram, connections: conns };
}

function checkCard(id, card, want) {
  check(card, `no card for backend ${id}`);
  for (const [kind, pct] of Object.entries(expectedMeters(want))) {
    const m = card.meters[kind];
    check(m, `${id}: no ${kind} meter`);
    check(Math.abs(m.style - pct) < 0.05, `${id} ${kind}: width ${m.style}%, want ${pct}%`);
    check(Math.abs(m.rendered - pct) < 2, `${id} ${kind}: drawn at ${m.rendered}%, want ${pct}%`);
    check(m.classes.length === 1 && m.classes[0] === colour(pct),
      `${id} ${kind} (${pct}%): classes [${m.classes}], want ${colour(pct)}`);
  }
  return true;
}

// "rgb(r, g, b)" -> [r, g, b]
const rgb = (c) => (c.match(/\d+(\.\d+)?/g) || []).slice(0, 3).map(Number);

function checkPalette(cards) {
  const byClass = {};
  for (const card of cards) {
    for (const m of Object.values(card.meters)) byClass[m.classes[0]] = rgb(m.background);
  }
  const [r, g, b] = [0, 1, 2];
  const green = byClass.green;
  const yellow = byClass.yellow;
  const red = byClass.red;
  check(green && yellow && red, `want bars of all three colours, got ${Object.keys(byClass)}`);
  check(green[g] > green[r] && green[g] > green[b], `green bar drawn rgb(${green})`);
  check(red[r] > red[g] && red[r] > red[b], `red bar drawn rgb(${red})`);
  check(yellow[r] > yellow[b] && yellow[g] > yellow[b], `yellow bar drawn rgb(${yellow})`);
}

async function migrationRows(page) {
  return page.$$eval("#migrations tbody tr", (trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent.trim())));
}

async function main() {
  mkdirSync(outdir, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // launch() gives the browser a fresh temporary profile (user-data dir),
    // removed when it closes.
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  currentPage = page;

  // Everything the page does is watched. Before the login, the page asks
  // /api/stats whether a session cookie is live: that one 401 is expected.
  let loggedIn = false;
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const where = msg.location()?.url || "";
    if (!loggedIn && /401/.test(msg.text()) && where === `${origin}/api/stats`) return;
    problems.push(`console error: ${msg.text()} (${where})`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("request", (req) => {
    const u = req.url();
    if (u.startsWith("data:")) return;
    if (new URL(u).origin !== origin) problems.push(`request to another host: ${u}`);
  });
  page.on("requestfailed", (req) =>
    problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`));
  page.on("response", (res) => {
    if (res.status() < 400) return;
    const expected = !loggedIn && res.status() === 401 && res.url() === `${origin}/api/stats`;
    if (!expected) problems.push(`HTTP ${res.status()} for ${res.request().method()} ${res.url()}`);
  });
  const dialogs = [];
  page.on("dialog", (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    d.accept();
  });
  // Page problems are noted with the step they came in, and fail the run
  // at the end, so that one of them does not hide whether the steps work.
  let reported = 0;
  const noProblems = (when) => {
    for (; reported < problems.length; reported++) {
      console.error(`PROBLEM ${when}: ${problems[reported]}`);
    }
  };

  // 1. The login form.
  const response = await page.goto(url, { waitUntil: "load" });
  check(response && response.ok(), `GET ${url}: ${response && response.status()}`);
  await page.locator("#login-form").waitFor({ state: "visible", timeout: 10000 });
  check(await page.locator("#dashboard-view").isHidden(), "dashboard shown before the login");
  await step(page, "login");

  // 2. Log in with the key; two backend cards with their bars.
  await page.fill("#key", key);
  loggedIn = true;
  await Promise.all([
    page.waitForResponse((r) => r.url() === `${origin}/api/login` && r.status() === 200),
    page.click("#login-form button[type=submit]"),
  ]);
  await page.locator("#dashboard-view").waitFor({ state: "visible", timeout: 10000 });
  check(await page.locator("#login-view").isHidden(), "login form still shown");
  // The session is a cookie the page's scripts cannot read.
  const session = (await context.cookies(origin)).find((c) => c.name === "dashboard_session");
  check(session && session.httpOnly && session.sameSite === "Strict",
    `session cookie ${JSON.stringify(session)}`);
  check(!(await page.evaluate(() => document.cookie)).includes("dashboard_session"),
    "document.cookie shows the session");

  let expect = process.env.DASHBOARD_EXPECT ? JSON.parse(process.env.DASHBOARD_EXPECT) : null;
  if (!expect) {
    const stats = await page.evaluate(() => fetch("/api/stats").then((r) => r.json()));
    expect = { servers: {} };
    for (const s of stats.servers) {
      expect.servers[s.id] = { cpu: s.cpuUsage, ramUsage: s.ramUsage, ramTotal: s.ramTotal,
        active: s.activeConnections, max: s.maxConnections };
    }
  }
  const ids = Object.keys(expect.servers).sort();
  check(ids.length === 2, `expected two backends, have ${ids}`);
  const cards = await until("two backend cards with the reported figures", async () => {
    const shown = await page.$$eval("#servers .server", (els) => els.map((e) => e.dataset.id));
    check(JSON.stringify(shown.sort()) === JSON.stringify(ids), `cards [${shown}]`);
    const read = [];
    for (const id of ids) {
      const card = await readCard(page, id);
      check(card && card.status === "healthy", `${id}: status ${card && card.status}`);
      checkCard(id, card, expect.servers[id]);
      read.push(card);
    }
    return read;
  }, 10000);
  checkPalette(cards);
  check((await page.locator("#total-servers").textContent()).trim() === "2", "total servers");
  check((await page.locator("#healthy-servers").textContent()).trim() === "2", "healthy servers");
  noProblems("after the login");
  await step(page, "backends");

  // 3. The test kills a backend; the migration shows within ~10 s.
  log("WAITING kill");
  const [word, victim, count] = (await nextLine()).trim().split(/\s+/);
  check(word === "KILLED" && ids.includes(victim), `unexpected line from the test: ${word} ${victim}`);
  const survivor = expect.drain || ids.find((id) => id !== victim);
  check(survivor !== victim, `asked to drain ${survivor}, the backend killed`);
  const killedAt = Date.now();
  const rows = await until(`a migration from ${victim} in the table`, async () => {
    const all = await migrationRows(page);
    const from = all.filter((r) => r[1] === victim);
    check(from.length > 0, `rows ${JSON.stringify(all)}`);
    const clients = from.reduce((n, r) => n + Number(r[3]), 0);
    check(count === undefined || clients === Number(count),
      `${clients} clients moved in ${JSON.stringify(from)}, want ${count}`);
    return from;
  }, MIGRATION_MS);
  for (const r of rows) check(r[2].includes(survivor), `moved to "${r[2]}", want ${survivor}`);
  log(`migration shown after ${Date.now() - killedAt} ms`);
  check(Number((await page.locator("#total-migrations").textContent()).trim()) >= 1,
    "total migrations still 0");
  // The survivor now carries every session, and its connection bar says so.
  if (expect.afterKill) {
    await until(`${survivor}'s bars after the move`, async () =>
      checkCard(survivor, await readCard(page, survivor), expect.afterKill), MIGRATION_MS);
  }
  noProblems("after the migration");
  await step(page, "migration");
  log("WAITING drain");
  const go = (await nextLine()).trim();
  check(go === "GO", `unexpected line from the test: ${go}`);

  // 4. Drain the other backend from its card (confirming the dialog).
  await until(`${victim}'s card gone`, async () =>
    (await page.locator(`#servers .server[data-id="${victim}"]`).count()) === 0, MIGRATION_MS);
  const card = page.locator(`#servers .server[data-id="${survivor}"]`);
  await Promise.all([
    page.waitForResponse((r) => r.url() === `${origin}/drain` && r.request().method() === "POST"),
    card.locator("button.drain").click(),
  ]);
  check(dialogs.some((d) => d.startsWith("confirm") && d.includes(survivor)),
    `no confirmation naming ${survivor}: ${dialogs}`);
  await until(`${survivor}'s card to say draining`, async () => {
    const c = await readCard(page, survivor);
    check(c && c.status === "draining", `status ${c && c.status}`);
    check(!c.drainVisible, "the Drain button is still offered");
    return true;
  }, 8000);
  check(!dialogs.some((d) => d.startsWith("alert")), `an alert: ${dialogs}`);
  noProblems("after the drain");
  await step(page, "draining");

  // Closing aborts the page's requests in flight: nothing is watched after.
  currentPage = null;
  await browser.close();
  browser = null;
  clearTimeout(watchdog);
  if (problems.length) await fail(`${problems.length} page problem(s)`);
  log("DONE");
  process.exit(0); // stdin, still open, would keep node running
}

main().catch((e) => fail(e.stack || e.message));
