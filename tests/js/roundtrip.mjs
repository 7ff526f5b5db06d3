// MQTT.js (v5) client driven by tests/integration/test_clients.py.
//
//   node roundtrip.mjs <ws-url> <topic> <protocolVersion 4|5>
//
// Connects over WebSocket, subscribes to <topic>/# with QoS 1, publishes
// <topic>/js/0..2 with QoS 1 and checks they come back in order, then prints
// "READY" and waits for one message on <topic>/from-paho (published by the
// test), prints "GOT <payload>", publishes <topic>/from-js and exits 0.
// Any error or a 10 s deadline exits non-zero with the reason on stderr.
import mqtt from "mqtt";

const [url, topic, version] = process.argv.slice(2);
if (!url || !topic) {
  console.error("usage: node roundtrip.mjs <ws-url> <topic> [4|5]");
  process.exit(2);
}

const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};
const deadline = setTimeout(() => fail("deadline of 10 s passed"), 10000);

const client = mqtt.connect(url, {
  protocolVersion: Number(version || 4),
  clientId: `js-${process.pid}-${Date.now()}`,
  clean: true,
  reconnectPeriod: 0,
  connectTimeout: 5000,
});
client.on("error", (err) => fail(`client error: ${err.message}`));
client.on("close", () => {
  if (!finished) fail("connection closed before the end");
});

let finished = false;
const want = ["js-0", "js-1", "js-2"];
const got = [];

client.on("connect", async () => {
  try {
    const granted = await client.subscribeAsync(`${topic}/#`, { qos: 1 });
    if (granted[0].qos !== 1) fail(`granted QoS ${granted[0].qos}`);
    for (let i = 0; i < want.length; i++) {
      await client.publishAsync(`${topic}/js/${i}`, want[i], { qos: 1 });
    }
  } catch (err) {
    fail(`subscribe/publish: ${err.message}`);
  }
});

client.on("message", async (t, payload, packet) => {
  if (t.startsWith(`${topic}/js/`)) {
    got.push(payload.toString());
    if (packet.qos !== 1) fail(`message ${t} arrived with QoS ${packet.qos}`);
    if (got.length === want.length) {
      if (JSON.stringify(got) !== JSON.stringify(want)) fail(`got ${JSON.stringify(got)}`);
      console.log("READY");
    }
  } else if (t === `${topic}/from-paho`) {
    console.log(`GOT ${payload.toString()}`);
    try {
      await client.publishAsync(`${topic}/from-js`, "hello from MQTT.js", { qos: 1 });
    } catch (err) {
      fail(`publish from-js: ${err.message}`);
    }
    finished = true;
    clearTimeout(deadline);
    client.end(false, () => process.exit(0));
  }
});
