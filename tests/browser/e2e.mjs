// The finance staff's way through the web page, in Debian's headless Chromium, driven by Playwright.
// Started by tests/browser.rs, which runs the service, sends the deliveries and checks the database after.
//
// Environment: ADMIN (the web page's base URL), SERVICE (the SOAP listener's), USER and PASSWORD,
// REJECTED (LeveranceId of a delivery rejected for a missing mapping), NEXT_DELIVERY (a file with a SOAP call
// whose only unmapped kontering the new rule maps), NEXT_BILAG (its BilagId), SHOTS (folder for screenshots).
// Prints "saved <id>" and "rolled back <id>" for the Rust side; exits 1 with the reason on any failure.

import { readFileSync, mkdirSync } from "node:fs";
import { check, env, launch } from "./chromium.mjs";

const [ADMIN, SERVICE, USER, PASSWORD, REJECTED, NEXT_DELIVERY, NEXT_BILAG, SHOTS] =
  ["ADMIN", "SERVICE", "USER", "PASSWORD", "REJECTED", "NEXT_DELIVERY", "NEXT_BILAG", "SHOTS"].map(env);

const NEW_RULE_WITH_ERROR = "5.57.72;*;2;*;5.2;*;*;*;;afdeling=SOC";
const NEW_RULE = "5.57.72;*;2;*;5.2;*;*;*;55772252;afdeling=SOC,ordning=refusion-fejlrettet";

mkdirSync(SHOTS, { recursive: true });
const browser = await launch();
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "da-DK" });
  page = await context.newPage();
  const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

  // 1. Without a login, the page sends one to log in; a wrong password is refused.
  await page.goto(`${ADMIN}/afvisninger`);
  check(page.url().includes("/login"), `expected the login page, got ${page.url()}`);
  await page.fill("input[name=user]", USER);
  await page.fill("input[name=password]", "forkert");
  await page.click("button[type=submit]");
  await page.getByText("Forkert brugernavn eller adgangskode.").waitFor();
  await page.fill("input[name=password]", PASSWORD);
  await shot("login");
  await page.click("button[type=submit]");
  await page.waitForURL(`${ADMIN}/afvisninger`);
  console.log("logged in");

  // 2. The rejected delivery: filter on its error code, open it, read its errors.
  await shot("afvisninger");
  await page.selectOption("select[name=kode]", "MAPNING_MANGLER");
  await page.click("form.filters button[type=submit]");
  await page.waitForURL(/kode=MAPNING_MANGLER/);
  const listed = await page.locator("table tbody tr").count();
  check(listed === 1, `expected only the delivery with MAPNING_MANGLER, found ${listed} rows`);
  await page.click(`a:text("${REJECTED}")`);
  await page.waitForURL(/\/leverancer\/\d+$/);
  const errorRow = page.locator("tr.error", { hasText: "MAPNING_MANGLER" }).first();
  await errorRow.waitFor();
  const errorText = await errorRow.innerText();
  check(errorText.includes("Finansbilag[1]/Postering[1]/Kontering"), `error path missing: ${errorText}`);
  check(/ingen regel|mapning/i.test(errorText), `Danish text missing: ${errorText}`);
  await shot("leverance-afvist");
  console.log("read the rejection:", errorText.replace(/\s+/g, " "));

  // 3. "Try it": no rule maps the kontering yet.
  const tryKontering = async () => {
    await page.goto(`${ADMIN}/mapninger`);
    await page.fill("input[name=funktion]", "5.57.72");
    await page.fill("input[name=dranst]", "2");
    await page.fill("input[name=art]", "5.2");
    await page.locator("form.try", { has: page.locator("input[name=funktion]") }).locator("button").click();
    await page.locator("#try-result").waitFor();
    return page.locator("#try-result").innerText();
  };
  const before = await tryKontering();
  check(before.includes("Ingen regel"), `expected no rule before the change: ${before}`);
  const versionBefore = await page.locator("main p").first().innerText();

  // 4. A rule with an error is refused, with the error at its row; the version in force stays.
  await page.goto(`${ADMIN}/mapninger/ret`);
  const konti = page.locator("textarea[name='fil:konti.csv']");
  const original = await konti.inputValue();
  await konti.fill(`${original.trimEnd()}\n${NEW_RULE_WITH_ERROR}\n`);
  await page.fill("input[name=comment]", "Refusion med dranst 2 manglede");
  await page.click("#edit button[type=submit]");
  const refusal = page.locator("#edit-errors");
  await refusal.waitFor();
  const refusalText = await refusal.innerText();
  check(refusalText.includes("ikke gemt") && refusalText.includes("erp_konto er tom"), `expected the refusal: ${refusalText}`);
  const badLine = original.trimEnd().split("\n").length + 1;
  check(refusalText.includes(`linje ${badLine}`), `expected the error at line ${badLine}: ${refusalText}`);
  const markedRow = page.locator(`table[data-file='konti.csv'] tr.error[data-line='${badLine}']`);
  check(await markedRow.count() === 1, "the row with the error is not marked");
  await shot("mapning-fejl");
  await page.goto(`${ADMIN}/mapninger`);
  check((await page.locator("main p").first().innerText()) === versionBefore, "a refused change changed the version in force");
  console.log("refused:", refusalText.replace(/\s+/g, " "));

  // 5. The fixed rule is saved and taken into use.
  await page.goto(`${ADMIN}/mapninger/ret`);
  await konti.fill(`${original.trimEnd()}\n${NEW_RULE}\n`);
  await page.fill("input[name=comment]", "Refusion med dranst 2 manglede");
  await page.click("#edit button[type=submit]");
  await page.waitForURL(/\/mapninger\?gemt=\d+/);
  const saved = new URL(page.url()).searchParams.get("gemt");
  console.log(`saved ${saved}`);
  const after = await tryKontering();
  check(after.includes(`konti.csv:${badLine}`) && after.includes("55772252"), `expected the new rule to map it: ${after}`);
  await shot("mapninger");

  // 6. A new delivery is mapped by the new rule.
  const response = await fetch(`${SERVICE}/sf1590a`, {
    method: "POST",
    headers: { "Content-Type": "text/xml; charset=utf-8", SOAPAction: "" },
    body: readFileSync(NEXT_DELIVERY, "utf8"),
  });
  const answer = await response.text();
  check(response.ok && answer.includes("Accepteret") && !answer.includes("Afvist"), `the new delivery was not accepted: ${answer}`);
  await page.goto(`${ADMIN}/leverancer?q=${encodeURIComponent(NEXT_BILAG)}`);
  await page.locator("table a").first().click();
  await page.waitForURL(/\/leverancer\/\d+$/);
  const booked = page.locator("tr", { hasText: "55772252" }).first();
  await booked.waitFor();
  const bookedText = await booked.innerText();
  check(bookedText.includes(`konti.csv:${badLine}`), `expected the booking to name the new rule: ${bookedText}`);
  await shot("leverance-bogfoert");
  console.log("booked:", bookedText.replace(/\s+/g, " "));

  // 7. Rolled back: the version before the change is in force again.
  await page.goto(`${ADMIN}/mapninger/historik`);
  const previous = Number(saved) - 1;
  await page.click(`button:text("Rul tilbage til version ${previous}")`);
  await page.waitForURL(/\/mapninger\?gemt=\d+/);
  const rolledBack = new URL(page.url()).searchParams.get("gemt");
  console.log(`rolled back ${rolledBack}`);
  const afterRollback = await tryKontering();
  check(afterRollback.includes("Ingen regel"), `expected no rule after the rollback: ${afterRollback}`);
  await page.goto(`${ADMIN}/mapninger/historik`);
  await page.getByText(`tilbage til version ${previous}`).first().waitFor();
  await shot("historik");

  await page.goto(`${ADMIN}/sortiment`);
  await page.getByText("KY (test)").first().waitFor();
  await shot("sortiment");
  console.log("done");
} catch (error) {
  console.error(`FAILED: ${error.message}`);
  if (page) await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
