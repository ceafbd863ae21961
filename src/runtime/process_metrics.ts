import process from "node:process";
import { Counter, Gauge, type Registry } from "prom-client";

/**
 * The process's own CPU and memory, with prom-client's standard names, read from
 * `Deno.memoryUsage()` and `process.cpuUsage()`: prom-client's default collectors read /proc,
 * which the recorder is not allowed to (it reads only its storage and upload folders).
 *
 * @example
 * registerProcessMetrics(registry); // process_resident_memory_bytes, process_cpu_seconds_total, ...
 */
export function registerProcessMetrics(registry: Registry): void {
  const registers = [registry];
  const memory = (name: string, help: string, key: keyof Deno.MemoryUsage) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(Deno.memoryUsage()[key]);
      },
    });
  memory("process_resident_memory_bytes", "Resident memory size in bytes", "rss");
  memory("nodejs_heap_size_total_bytes", "JavaScript heap size in bytes", "heapTotal");
  memory("nodejs_heap_size_used_bytes", "JavaScript heap in use in bytes", "heapUsed");
  memory("nodejs_external_memory_bytes", "Memory of buffers and other objects outside the heap", "external");
  const cpu = (name: string, help: string, of: (u: NodeJS.CpuUsage) => number) => {
    let last = 0;
    return new Counter({
      name,
      help,
      registers,
      collect() {
        const now = of(process.cpuUsage()) / 1e6;
        this.inc(Math.max(0, now - last));
        last = now;
      },
    });
  };
  cpu("process_cpu_user_seconds_total", "User CPU time in seconds", (u) => u.user);
  cpu("process_cpu_system_seconds_total", "System CPU time in seconds", (u) => u.system);
  cpu("process_cpu_seconds_total", "User and system CPU time in seconds", (u) => u.user + u.system);
  new Gauge({
    name: "process_start_time_seconds",
    help: "Start time of the process since the epoch in seconds",
    registers,
  })
    .set(Math.round(performance.timeOrigin / 1000));
}
