// Drives build/twilio-sim with the official twilio npm client (client.api.baseUrl
// pointed at the simulator): create, fetch, list with paging, and a RestException.
// usage: node sim_client.js BASE_URL ACCOUNT_SID AUTH_TOKEN ; prints "ok - ..." lines
// and exits non-zero on the first failure.
"use strict";
const twilio = require("twilio");

const [baseUrl, accountSid, authToken] = process.argv.slice(2);
const client = twilio(accountSid, authToken);
client.api.baseUrl = baseUrl;

function check(name, cond, detail) {
  if (!cond) {
    console.log("FAIL - " + name + (detail ? ": " + detail : ""));
    process.exit(1);
  }
  console.log("ok   - " + name);
}

(async () => {
  const to = "+14155550142";
  const msg = await client.messages.create({ to, from: "+15005550006", body: "Hello from twilio-node" });
  check("create returns a MessageInstance", /^SM[0-9a-f]{32}$/.test(msg.sid), msg.sid);
  check("create status queued", msg.status === "queued", msg.status);
  check("numSegments is a string", msg.numSegments === "1", JSON.stringify(msg.numSegments));
  check("dateCreated parsed to a Date", msg.dateCreated instanceof Date && !isNaN(msg.dateCreated), String(msg.dateCreated));

  const fetched = await client.messages(msg.sid).fetch();
  check("fetch returns the same message", fetched.sid === msg.sid && fetched.body === "Hello from twilio-node");

  for (let i = 0; i < 4; i++)
    await client.messages.create({ to, from: "+15005550006", body: "page " + i });
  const all = await client.messages.list({ to, pageSize: 2 });
  check("list follows next_page_uri across pages", all.length === 5, "got " + all.length);
  check("list is newest first", all[0].body === "page 3", all[0].body);
  const page = await client.messages.page({ to, pageSize: 2 });
  check("page() has 2 instances and a next page", page.instances.length === 2 && !!page.nextPageUrl);
  const next = await page.nextPage();
  check("nextPage() works", next && next.instances.length === 2 && next.instances[0].body === "page 1");
  const limited = await client.messages.list({ to, limit: 3, pageSize: 2 });
  check("list with limit", limited.length === 3, "got " + limited.length);

  const svc = await client.messages.create({ to, messagingServiceSid: "MG0123456789abcdef0123456789abcdef", body: "svc" });
  check("Messaging Service create is accepted", svc.status === "accepted", svc.status);

  try {
    await client.messages.create({ to: "+15005550001", from: "+15005550006", body: "x" });
    check("invalid To raises", false);
  } catch (e) {
    check("RestException with code 21211", e.code === 21211 && e.status === 400, e.code + " " + e.status + " " + e.message);
    check("RestException carries moreInfo", e.moreInfo === "https://www.twilio.com/docs/errors/21211", e.moreInfo);
  }
  try {
    await client.messages("SM00000000000000000000000000000000").fetch();
    check("unknown sid raises", false);
  } catch (e) {
    check("unknown sid is 404/20404", e.status === 404 && e.code === 20404, e.code + " " + e.status);
  }
  const bad = twilio(accountSid, "wrong-token");
  bad.api.baseUrl = baseUrl;
  try {
    await bad.messages.list({ limit: 1 });
    check("bad credentials raise", false);
  } catch (e) {
    check("bad credentials give 401/20003", e.status === 401 && e.code === 20003, e.code + " " + e.status);
  }
  console.log("twilio-node " + require("twilio/package.json").version + ": all checks passed");
})().catch((e) => {
  console.log("FAIL - unexpected error: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
