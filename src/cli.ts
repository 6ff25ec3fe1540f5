/**
 * `knative-async <command>`: one entry point for every component, so one image serves them all.
 * Each command lives in its own folder with a thin `main.ts`; they are loaded lazily so that, say, the
 * producer never loads the Kubernetes client.
 */
const commands: Record<
  string,
  { summary: string; load: () => Promise<{ main(argv: string[]): Promise<void> }> }
> = {
  producer: {
    summary: "HTTP ingest: stores each request in the Redis stream, answers 202",
    load: () => import("./producer/main.js"),
  },
  dispatcher: {
    summary: "reads the stream and delivers each entry as a CloudEvent to K_SINK",
    load: () => import("./dispatcher/main.js"),
  },
  consumer: {
    summary: "receives the CloudEvent and replays the original request to the service",
    load: () => import("./consumer/main.js"),
  },
  controller: {
    summary: "reconciles async KIngresses into the real networking layer's KIngress",
    load: () => import("./controller/main.js"),
  },
  render: {
    summary: "prints the child KIngress and Service the controller would write for a KIngress",
    load: () => import("./controller/render.js"),
  },
  dlq: { summary: "inspect, replay and purge the dead-letter stream", load: () => import("./dlq/main.js") },
  dev: {
    summary: "local all-in-one mode: Redis, gateway, producer, dispatcher, consumer and a sample app",
    load: () => import("./dev/main.js"),
  },
  "sample-app": {
    summary: "the sample app: sleeps a configurable time, answers, can record requests",
    load: () => import("./sample-app/main.js"),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: knative-async <command> [options]\n\ncommands:\n${lines.join("\n")}\n\nEach command is configured through environment variables; see the README's configuration reference.\n`;
}

export async function run(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(usage());
    return;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`knative-async: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    process.exit(2);
  }
  const module = await command.load();
  await module.main(rest);
}

await run(process.argv.slice(2));
