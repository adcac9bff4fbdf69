// The page Importtabeller in Debian's headless Chromium, driven by Playwright: a delivery pasted into "Prøv"
// shows the rows each finansbilag would give the ERP's import tables, and the one that does not fit is named.
// Started by tests/it/browser.rs, which runs the service with the example table profile.
//
// Environment: ADMIN (the web page's base URL), USER and PASSWORD, DELIVERY (a file with a SOAP call),
// SHOTS (folder for screenshots). Exits 1 with the reason on any failure.

import { readFileSync, mkdirSync } from "node:fs";
import { check, env, launch } from "./chromium.mjs";

const [ADMIN, USER, PASSWORD, DELIVERY, SHOTS] = ["ADMIN", "USER", "PASSWORD", "DELIVERY", "SHOTS"].map(env);

mkdirSync(SHOTS, { recursive: true });
const browser = await launch();
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "da-DK" });
  page = await context.newPage();
  await page.goto(`${ADMIN}/importtabeller`);
  await page.fill("input[name=user]", USER);
  await page.fill("input[name=password]", PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForURL(/\/importtabeller$/);
  await page.locator("#target-backlog").waitFor();

  await page.fill("textarea[name=leverance]", readFileSync(DELIVERY, "utf8"));
  await page.selectOption("select[name=integration]", "SF1590_A");
  await page.click("form.try button[type=submit]");
  const tables = page.locator("table.target-row");
  await tables.first().waitFor();
  const text = await page.locator("main").innerText();
  check(text.includes("erp_import_linje") && text.includes("beloeb_oere"), "the lines' target and columns are shown");
  check(text.includes("125050") && text.includes("1250,50") && text.includes("-1250.50"), "the amounts as the ERP gets them");
  check(text.includes("«ved bogføring»"), "keys given at booking are marked");
  check(text.includes("010190-XXXX") && !text.includes("0101901234\t"), "a CPR number is shown masked");
  check(text.includes("afvises") && text.includes("erp_import_linje.tekst"), "the item that does not fit is named with its column");
  await page.screenshot({ path: `${SHOTS}/importtabeller-proev.png`, fullPage: true });
  console.log(`tables ${await tables.count()}`);
} catch (error) {
  if (page) await page.screenshot({ path: `${SHOTS}/importtabeller-failure.png`, fullPage: true }).catch(() => {});
  console.error(error.stack || String(error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
