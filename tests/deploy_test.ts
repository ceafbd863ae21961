import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "yaml";
import { ROOT } from "./helpers.ts";

const read = (path: string) => Deno.readTextFileSync(join(ROOT, path));

Deno.test("compose.yaml: the stack, its ports and volumes, and only variables the service reads", () => {
  const compose = parse(read("compose.yaml"));
  const services = compose.services;
  assert.deepEqual(Object.keys(services).sort(), ["demo-source", "prometheus", "rabbitmq", "recorder"]);
  const recorder = services.recorder;
  assert.equal(recorder.image, "denoland/deno:2.9.6");
  assert.deepEqual(recorder.command, ["task", "start"]);
  assert.equal(recorder.restart, "on-failure", "the supervisor's escalation exits 70: restart the container");
  assert.match(recorder.healthcheck.test.join(" "), /\/healthz/);
  assert.ok(recorder.volumes.includes("recordings:/recordings"));
  assert.ok("recordings" in compose.volumes);
  const env = recorder.environment;
  assert.equal(env.STORAGE_PATH, "/recordings");
  assert.ok(recorder.ports.includes(`${env.HTTP_PORT}:${env.HTTP_PORT}`));
  assert.ok(recorder.ports.includes(`${env.METRICS_PORT}:${env.METRICS_PORT}`));
  assert.ok(services.rabbitmq.ports.includes("15672:15672"), "the management UI");
  assert.deepEqual(services["demo-source"].profiles, ["demo"]);
  // Every variable set in the stack is one the code reads.
  const config = read("src/config.ts"), demo = read("src/demo.ts");
  for (const name of Object.keys(env)) {
    assert.ok(
      config.includes(`"${name}"`) || config.includes(`env.${name}`),
      `${name} is not read by src/config.ts`,
    );
  }
  for (const name of Object.keys(services["demo-source"].environment)) {
    assert.ok(demo.includes(`env.${name}`), `${name} is not read by src/demo.ts`);
  }
});

Deno.test("Prometheus scrapes the recorder's metrics port; every alert names a metric the service exports", () => {
  const compose = parse(read("compose.yaml"));
  const prometheus = parse(read("docs/prometheus/prometheus.yml"));
  assert.deepEqual(prometheus.scrape_configs[0].static_configs[0].targets, [
    `recorder:${compose.services.recorder.environment.METRICS_PORT}`,
  ]);
  assert.deepEqual(prometheus.rule_files, ["/etc/prometheus/alerts.yml"]);
  const rules = parse(read("docs/prometheus/alerts.yml")).groups[0].rules;
  assert.deepEqual(rules.map((r: { alert: string }) => r.alert), [
    "RecorderDown",
    "StreamDisconnected",
    "FramesDropped",
    "OutboxGrowing",
    "StorageNearBudget",
  ]);
  const metrics = read("src/metrics.ts");
  for (const r of rules) {
    for (const name of r.expr.match(/storage_[a-z_]+/g) ?? []) {
      assert.ok(metrics.includes(`"${name}"`), `${r.alert}: ${name} is not exported`);
    }
  }
});
