import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "yaml";
import { loadConfig } from "../src/app/config.ts";
import { launchArgs } from "../src/app/launch.ts";
import { ROOT } from "./helpers.ts";

const read = (path: string) => Deno.readTextFileSync(join(ROOT, path));

/** Compose's `${NAME:-default}` as compose fills it in when NAME is unset. */
const interpolate = (env: Record<string, string>) =>
  Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replace(/\$\{\w+:-([^}]*)\}/g, "$1")]));

/** The variables src/app/config.ts reads. */
function configVariables(): string[] {
  const config = read("src/app/config.ts");
  const names = [...config.matchAll(/env\.([A-Z0-9_]+)|\(env, "([A-Z0-9_]+)"/g)].map((m) => m[1] ?? m[2]);
  return [...new Set(names)].sort();
}

Deno.test("compose.yaml: the stack, its ports and volumes, and only variables the service reads", () => {
  const compose = parse(read("compose.yaml"), { merge: true });
  const services = compose.services;
  assert.deepEqual(Object.keys(services).sort(), [
    "demo-source",
    "minio",
    "minio-bucket",
    "postgres",
    "prometheus",
    "rabbitmq",
    "recorder",
    "recorder-a",
    "recorder-b",
    "viewer",
  ]);
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
  assert.deepEqual(services["demo-source"].profiles, ["demo", "fleet"]);
  // Every variable set in the stack is one the code reads.
  const demo = read("src/tools/demo.ts");
  for (const name of Object.keys(env)) assert.ok(configVariables().includes(name), `${name} is not read`);
  for (const name of Object.keys(services["demo-source"].environment)) {
    assert.ok(demo.includes(`env.${name}`), `${name} is not read by src/tools/demo.ts`);
  }
  // `deno task start` in the container grants the stack's own hosts and volumes.
  const flags = launchArgs("start", loadConfig(interpolate(env)));
  assert.ok(
    flags.includes("--allow-net=demo-source:5001,rabbitmq:5672,0.0.0.0:8080,0.0.0.0:8005"),
    flags.join(" "),
  );
  assert.ok(flags.includes("--allow-write=/recordings,/uploads"));

  // The fleet profile: two recorders and a viewer on one index and one bucket, each its own name and port.
  const fleet = ["recorder-a", "recorder-b", "viewer"].map((name) => services[name]);
  assert.deepEqual(fleet.map((s) => s.environment.RECORDER_ID), ["station-a", "station-b", "viewer"]);
  assert.deepEqual(fleet.map((s) => s.ports), [["8081:8080"], ["8082:8080"], ["8083:8080"]]);
  for (const s of fleet) {
    assert.deepEqual(s.profiles, ["fleet"]);
    for (const name of Object.keys(s.environment)) {
      assert.ok(configVariables().includes(name), `${name} is not read`);
    }
    const env = interpolate(s.environment);
    const config = loadConfig(env, (p) => p === env.CONFIG_FILE ? read("docs/fleet-viewer.json") : read(p));
    const args = launchArgs("start", config).join(" ");
    assert.match(args, /--allow-net=[^ ]*postgres:5432/);
    assert.match(args, /--allow-net=[^ ]*minio:9000/);
    assert.equal(config.streams.length, s === services.viewer ? 0 : 1);
  }
  assert.equal(
    services["minio-bucket"].entrypoint.at(-1).includes(
      `fleet/${new URL(fleet[0].environment.ARCHIVE_URL).host}`,
    ),
    true,
    "the bucket the recorders archive to is made",
  );
});

Deno.test("docker-compose accepts compose.yaml under each profile: keys, conditions and references as compose reads them", async () => {
  for (const profile of [[], ["--profile", "demo"], ["--profile", "fleet"]]) {
    const { code, stderr } = await new Deno.Command("docker-compose", {
      args: [...profile, "config", "--quiet"],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, `docker-compose ${profile.join(" ")} config: ${new TextDecoder().decode(stderr)}`);
  }
});

Deno.test("promtool: the Prometheus config and rules are valid, and each alert fires on its condition only", async () => {
  const promtool = async (...args: string[]) => {
    const { code, stdout, stderr } = await new Deno.Command("promtool", {
      args,
      cwd: join(ROOT, "docs/prometheus"),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
    assert.equal(code, 0, `promtool ${args.join(" ")}: ${out}`);
    return out;
  };
  assert.match(await promtool("check", "rules", "alerts.yml"), /SUCCESS: 5 rules found/);
  assert.match(await promtool("test", "rules", "alerts_test.yml"), /SUCCESS/);
  // The config names the rules where compose mounts them: check it against a copy that names ours.
  const dir = await Deno.makeTempDir();
  try {
    const config = join(dir, "prometheus.yml");
    const text = read("docs/prometheus/prometheus.yml");
    await Deno.writeTextFile(
      config,
      text.replace("/etc/prometheus/alerts.yml", join(ROOT, "docs/prometheus/alerts.yml")),
    );
    assert.match(await promtool("check", "config", config), /SUCCESS: 1 rule files found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("docs/operations.md documents every variable the service reads and every metric it exports", () => {
  const ops = read("docs/operations.md");
  const table = [...ops.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]).sort();
  assert.deepEqual(table, configVariables());
  for (const file of ["src/runtime/metrics.ts", "src/runtime/process_metrics.ts"]) {
    for (const [, name] of read(file).matchAll(/"((?:storage|process|nodejs)_[a-z_]+)"/g)) {
      const short = name.replace(/^storage_/, "");
      assert.ok(
        ops.includes(`\`${short}`) || ops.includes(`\`${name}`),
        `${name} is not in docs/operations.md`,
      );
    }
  }
});

Deno.test("the systemd unit and its environment file: a valid unit, a configuration the service accepts", async () => {
  const env = Object.fromEntries(
    read("docs/skyreel.env").split("\n").filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split(/=(.*)/s, 2)),
  );
  for (const name of Object.keys(env)) assert.ok(configVariables().includes(name), `${name} is not read`);
  const config = loadConfig(env);
  assert.equal(config.storagePath, "/var/lib/skyreel/recordings");
  const unit = read("docs/skyreel.service");
  assert.match(unit, /^EnvironmentFile=\/etc\/skyreel\/skyreel.env$/m);
  assert.match(unit, /^StateDirectory=skyreel$/m, "/var/lib/skyreel is the unit's own");
  assert.match(unit, /^RestartPreventExitStatus=2$/m);
  // tests/setup.sh installs systemd-analyze: a unit it cannot verify fails here, never passes.
  const dir = await Deno.makeTempDir();
  try {
    // verify wants ExecStart to exist: stand in a binary that does.
    const path = join(dir, "skyreel.service");
    await Deno.writeTextFile(path, unit.replace(/^ExecStart=.*$/m, "ExecStart=/bin/true"));
    const { code, stderr } = await new Deno.Command("systemd-analyze", { args: ["verify", path] }).output();
    assert.equal(code, 0);
    assert.equal(new TextDecoder().decode(stderr), "", "no unknown keys or bad values");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Prometheus scrapes the recorder's metrics port; every alert names a metric the service exports", () => {
  const compose = parse(read("compose.yaml"), { merge: true });
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
  const metrics = read("src/runtime/metrics.ts");
  for (const r of rules) {
    for (const name of r.expr.match(/storage_[a-z_]+/g) ?? []) {
      assert.ok(metrics.includes(`"${name}"`), `${r.alert}: ${name} is not exported`);
    }
  }
});
