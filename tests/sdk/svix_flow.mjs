// Drives a running Herald through the product flow of svix_flow.py with the
// official `svix` npm package, and verifies every delivery with the npm
// `standardwebhooks` package, as a consumer would.
//
// Started by tests/svix_sdk.rs with HERALD_URL and HERALD_TOKEN set, from a
// copy beside the node_modules that `npm ci` installed (tests/sdk/package.json
// and package-lock.json pin both). Exits non-zero on the first broken
// expectation; the last line says which SDK passed.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { Svix, ApiException, MessageStatus } from "svix";
import { Webhook, WebhookVerificationError } from "standardwebhooks";

const sdk = createRequire(import.meta.url)("svix/package.json");

const EXAMPLE = { ticket: 7, subject: "An example ticket" };

/** A receiver on loopback: records what it accepts, refuses while told to. */
function startReceiver() {
  const received = [];
  const refused = [];
  const waiters = [];
  const receiver = { received, refused, refusing: false };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const refuse = receiver.refusing;
      (refuse ? refused : received).push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(refuse ? 500 : 200).end();
      for (const wake of waiters.splice(0)) wake();
    });
  });
  receiver.waitFor = async (n) => {
    const deadline = Date.now() + 15000;
    while (received.length < n) {
      assert.ok(Date.now() < deadline, `expected ${n} deliveries, got ${received.length}`);
      await new Promise((wake) => {
        waiters.push(wake);
        setTimeout(wake, 250);
      });
    }
  };
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      server.unref();
      receiver.url = `http://127.0.0.1:${server.address().port}/hook`;
      resolve(receiver);
    }),
  );
}

/** Polls `fetch` until `done` holds for its answer (15 s at most). */
async function waitUntil(fetch, done) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const got = await fetch();
    if (done(got)) return got;
    assert.ok(Date.now() < deadline, `condition not met in time; last answer: ${JSON.stringify(got)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The delivery is message `msgId` carrying `payload`, signed with each of `secrets`. */
function verify(delivery, msgId, payload, ...secrets) {
  assert.equal(delivery.headers["webhook-id"], msgId);
  for (const secret of secrets) {
    assert.deepEqual(new Webhook(secret).verify(delivery.body, delivery.headers), payload);
  }
  assert.throws(() => new Webhook(secrets[0]).verify(delivery.body + " ", delivery.headers), WebhookVerificationError);
}

async function expectStatus(status, call) {
  await assert.rejects(call, (e) => e instanceof ApiException && e.code === status);
}

/** Five customers with uids, listed two at a time by following the iterator. */
async function applications(svix) {
  const apps = [];
  for (let i = 0; i < 5; i++) apps.push(await svix.application.create({ name: `Customer ${i}`, uid: `customer-${i}` }));
  assert.equal((await svix.application.getOrCreate({ name: "Customer 0", uid: "customer-0" })).id, apps[0].id);
  assert.equal((await svix.application.get("customer-3")).id, apps[3].id);
  const listed = [];
  let iterator;
  let pages = 0;
  for (;;) {
    const page = await svix.application.list({ limit: 2, iterator });
    listed.push(...page.data.map((a) => a.id));
    pages += 1;
    if (page.done) break;
    iterator = page.iterator;
  }
  assert.deepEqual(listed.sort(), apps.map((a) => a.id).sort());
  assert.equal(pages, 3);
  return apps[0];
}

async function eventTypes(svix) {
  await svix.eventType.create({ name: "ticket.created", description: "A ticket was opened" });
  await svix.eventType.create({ name: "ticket.closed", description: "A ticket was closed" });
  const names = (await svix.eventType.list()).data.map((e) => e.name).sort();
  assert.deepEqual(names, ["ticket.closed", "ticket.created"]);
  const schemas = { 1: { type: "object", examples: [EXAMPLE] } };
  await svix.eventType.upsert("ticket.created", { description: "Opened by a customer", schemas });
  assert.equal((await svix.eventType.get("ticket.created")).description, "Opened by a customer");
  const patched = await svix.eventType.patch("ticket.closed", { description: "Closed by support" });
  assert.equal(patched.description, "Closed by support");
}

async function main() {
  const receiver = await startReceiver();
  const { received, refused } = receiver;
  const base = process.env.HERALD_URL;
  const svix = new Svix(process.env.HERALD_TOKEN, { serverUrl: base });
  const started = new Date();

  const app = await applications(svix);
  await eventTypes(svix);

  const ep = await svix.endpoint.create(app.id, {
    url: receiver.url,
    uid: "tickets",
    eventTypes: ["ticket.created"],
    description: "Ticket events",
  });
  assert.deepEqual(ep.eventTypes, ["ticket.created"]);
  assert.equal((await svix.endpoint.get(app.id, "tickets")).id, ep.id);
  await svix.endpoint.setHeaders(app.id, ep.id, { headers: { "X-Customer": "acme" } });
  assert.deepEqual((await svix.endpoint.getHeaders(app.id, ep.id)).headers, { "X-Customer": "acme" });
  const secret = (await svix.endpoint.getSecret(app.id, ep.id)).key;

  // One message the endpoint wants, one it filtered out.
  const created = await svix.message.create(app.id, { eventType: "ticket.created", payload: { ticket: 42 } });
  const closed = await svix.message.create(app.id, { eventType: "ticket.closed", payload: { ticket: 42 } });
  await receiver.waitFor(1);
  verify(received[0], created.id, { ticket: 42 }, secret);
  assert.equal(received[0].headers["x-customer"], "acme");

  // This SDK asks for no payloads unless told to (with_content=false).
  assert.deepEqual((await svix.message.get(app.id, created.id, { withContent: true })).payload, { ticket: 42 });
  assert.deepEqual((await svix.message.get(app.id, created.id)).payload, {});
  assert.deepEqual((await svix.message.list(app.id)).data.map((m) => m.id), [closed.id, created.id]);
  const onlyClosed = await svix.message.list(app.id, { eventTypes: ["ticket.closed"] });
  assert.deepEqual(onlyClosed.data.map((m) => m.id), [closed.id]);

  const byEndpoint = (status) => svix.messageAttempt.listByEndpoint(app.id, ep.id, { status }).then((l) => l.data);
  const byMsg = (msgId, status) => svix.messageAttempt.listByMsg(app.id, msgId, { status }).then((l) => l.data);
  const ok = await waitUntil(() => byEndpoint(MessageStatus.Success), (a) => a.length > 0);
  assert.deepEqual(ok.map((a) => a.msgId), [created.id]);
  assert.deepEqual((await byMsg(created.id, MessageStatus.Success)).map((a) => a.endpointId), [ep.id]);
  assert.deepEqual(await byMsg(created.id, MessageStatus.Fail), []);
  assert.deepEqual(await byMsg(closed.id), []);

  // A delivery the receiver refuses until it fails for good, then recovered.
  receiver.refusing = true;
  const failing = await svix.message.create(app.id, { eventType: "ticket.created", payload: { ticket: 43 } });
  const stats = await waitUntil(() => svix.endpoint.getStats(app.id, ep.id), (s) => s.fail === 1);
  assert.deepEqual([stats.success, stats.pending, stats.sending, stats.canceled], [1, 0, 0, 0]);
  receiver.refusing = false;
  assert.ok(refused.length > 0 && refused.every((d) => d.headers["webhook-id"] === failing.id));
  const failed = await byEndpoint(MessageStatus.Fail);
  assert.ok(failed.length > 0);
  assert.deepEqual([...new Set(failed.map((a) => a.msgId))], [failing.id]);
  assert.deepEqual(await byMsg(failing.id, MessageStatus.Success), []);
  const task = await svix.endpoint.recover(app.id, ep.id, { since: started });
  assert.ok(task.id);
  await receiver.waitFor(2);
  verify(received[1], failing.id, { ticket: 43 }, secret);

  // After a rotation deliveries verify with the new secret (and the old one
  // through the grace period).
  await svix.endpoint.rotateSecret(app.id, ep.id, {});
  const newSecret = (await svix.endpoint.getSecret(app.id, ep.id)).key;
  assert.notEqual(newSecret, secret);
  const after = await svix.message.create(app.id, { eventType: "ticket.created", payload: { ticket: 44 } });
  await receiver.waitFor(3);
  verify(received[2], after.id, { ticket: 44 }, newSecret, secret);

  await svix.messageAttempt.resend(app.id, created.id, ep.id);
  await receiver.waitFor(4);
  verify(received[3], created.id, { ticket: 42 }, newSecret);

  const example = await svix.endpoint.sendExample(app.id, ep.id, { eventType: "ticket.created" });
  await receiver.waitFor(5);
  verify(received[4], example.id, EXAMPLE, newSecret);

  // Every delivery carried the endpoint's headers; the filtered-out message never came.
  assert.ok(received.every((d) => d.headers["x-customer"] === "acme"));
  assert.ok(![...received, ...refused].some((d) => d.headers["webhook-id"] === closed.id));

  const access = await svix.authentication.appPortalAccess(app.id, {});
  assert.ok(access.url.startsWith("http") && access.token);
  const portal = new Svix(access.token, { serverUrl: base });
  assert.deepEqual((await portal.endpoint.list(app.id)).data.map((e) => e.id), [ep.id]);

  await svix.endpoint.delete(app.id, ep.id);
  await expectStatus(404, () => svix.endpoint.get(app.id, ep.id));
  await svix.application.delete(app.id);
  await expectStatus(404, () => svix.application.get(app.id));
  console.log(`svix ${sdk.version} (npm): every call succeeded and every delivery verified`);
}

await main();
// The SDK's idle keep-alive connections would hold the process open for seconds more.
process.exit(0);
