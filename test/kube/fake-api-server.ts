/**
 * A fake Kubernetes API server that speaks the real HTTP protocol @kubernetes/client-node uses, for the
 * few resources the controller touches (KIngresses, Services, Events, Leases). Objects live in memory.
 *
 * What it does like the real one: list (with the collection's resourceVersion and label selectors),
 * watch (`?watch=true&resourceVersion=N` streams JSON lines from after N, with label-selector
 * transitions turned into ADDED/DELETED; a resourceVersion older than the kept history gets an ERROR
 * 410 Expired event and the stream ends), get, create (409 AlreadyExists), replace with optimistic
 * concurrency (409 Conflict on a stale resourceVersion; KIngresses require one), the /status subresource
 * (a main-resource write keeps the status, a status write keeps everything else), metadata.generation
 * bumped on spec changes, no-op updates that change nothing and send no event, delete with the garbage
 * collector's cascade to dependents (ownerReferences), 404 NotFound and Status bodies, and MicroTime
 * parsing for Leases.
 *
 * What tests add: `seed` objects, `edit`/`remove` them as another client would, `failNext` to induce a
 * failure on a verb and resource, `endWatches` and `compact` to end watches and expire history, and
 * `actions`: every request with its verb, resource, user (the bearer token) and body, like an audit log.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";

export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name?: string;
    generateName?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{ uid: string; [k: string]: unknown }>;
    [k: string]: unknown;
  };
  spec?: unknown;
  status?: unknown;
  [k: string]: unknown;
};

export interface ResourceType {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly hasStatus: boolean;
  /** CRDs refuse an update without metadata.resourceVersion; core types allow it. */
  readonly requireResourceVersion: boolean;
  /** Extra checks on every write: the messages of a 422 (or, for `badRequest`, a 400). */
  readonly validate?: (object: KubeObject) => { invalid?: string[]; badRequest?: string };
}

const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/;

export const RESOURCE_TYPES: readonly ResourceType[] = [
  {
    group: "networking.internal.knative.dev",
    version: "v1alpha1",
    plural: "ingresses",
    kind: "Ingress",
    hasStatus: true,
    requireResourceVersion: true,
  },
  {
    group: "",
    version: "v1",
    plural: "services",
    kind: "Service",
    hasStatus: true,
    requireResourceVersion: false,
  },
  {
    group: "",
    version: "v1",
    plural: "events",
    kind: "Event",
    hasStatus: false,
    requireResourceVersion: false,
  },
  {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    kind: "Lease",
    hasStatus: false,
    requireResourceVersion: false,
    // metav1.MicroTime is parsed with RFC3339Micro: exactly six fractional digits, or the request fails.
    validate(object) {
      const spec = (object.spec ?? {}) as Record<string, unknown>;
      for (const field of ["acquireTime", "renewTime"]) {
        const value = spec[field];
        if (value !== undefined && (typeof value !== "string" || !MICRO_TIME.test(value))) {
          return { badRequest: `parsing time ${JSON.stringify(value)} as RFC3339Micro: spec.${field}` };
        }
      }
      return {};
    },
  },
];

export type Verb = "get" | "list" | "watch" | "create" | "update" | "patch" | "delete";

export interface Action {
  readonly verb: Verb;
  readonly apiGroup: string;
  readonly resource: string;
  readonly subresource: string | undefined;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  /** The bearer token the request carried ("" without one): who did it. */
  readonly user: string;
  /** The request body, for create, update and delete (DeleteOptions). */
  readonly object: KubeObject | undefined;
  /** The HTTP status answered. */
  readonly code: number;
}

export interface InducedFailure {
  readonly verb: Verb;
  readonly resource: string;
  readonly subresource?: string;
  readonly name?: string;
  /** Only requests by this user (bearer token) fail. */
  readonly user?: string;
  /** Default 500. */
  readonly code?: number;
  /** Default InternalError (Conflict for 409). */
  readonly reason?: string;
  readonly message?: string;
  /** How many matching requests fail; default 1. */
  readonly times?: number;
}

interface WatchEvent {
  readonly rv: number;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly resource: string;
  readonly object: KubeObject;
  /** The object before a MODIFIED, to tell label-selector transitions. */
  readonly previous?: KubeObject;
}

interface Watcher {
  readonly resource: string;
  readonly namespace: string | undefined;
  readonly selector: LabelSelector;
  readonly res: ServerResponse;
}

type LabelSelector = (labels: Record<string, string> | undefined) => boolean;

/** Equality-based selectors (`a=b,c!=d,e`) as the API accepts them; enough for the controller's. */
export function parseLabelSelector(text: string | null): LabelSelector {
  if (!text) return () => true;
  const terms = text.split(",").map((term) => {
    const t = term.trim();
    const ne = t.indexOf("!=");
    if (ne >= 0) {
      const [k, v] = [t.slice(0, ne), t.slice(ne + 2)];
      return (l: Record<string, string>) => l[k] !== v;
    }
    const eq = t.indexOf("=");
    if (eq >= 0) {
      const k = t.slice(0, eq);
      const v = t.slice(t[eq + 1] === "=" ? eq + 2 : eq + 1);
      return (l: Record<string, string>) => l[k] === v;
    }
    if (t.startsWith("!")) return (l: Record<string, string>) => !(t.slice(1) in l);
    return (l: Record<string, string>) => t in l;
  });
  return (labels) => terms.every((term) => term(labels ?? {}));
}

function statusBody(code: number, reason: string, message: string) {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
}

const REASON_BY_CODE: Record<number, string> = {
  400: "BadRequest",
  404: "NotFound",
  405: "MethodNotAllowed",
  409: "Conflict",
  410: "Expired",
  422: "Invalid",
  500: "InternalError",
  503: "ServiceUnavailable",
};

function now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

function clone<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export class FakeApiServer {
  readonly actions: Action[] = [];
  /** Called with each write the server accepted (after it is stored); tests may assert invariants. */
  onWrite: ((action: Action) => void) | undefined;
  private readonly store = new Map<string, Map<string, KubeObject>>();
  private history: WatchEvent[] = [];
  /** Watch requests from before this resourceVersion get 410 Expired. */
  private oldestKept = 0;
  private rv = 1;
  private readonly watchers = new Set<Watcher>();
  private failures: Array<InducedFailure & { left: number }> = [];
  private readonly validators = new Map<string, (object: KubeObject) => string[]>();
  private server: Server | undefined;
  private port = 0;

  static async start(): Promise<FakeApiServer> {
    const fake = new FakeApiServer();
    fake.server = createServer((req, res) => {
      fake.handle(req, res).catch((err) => {
        if (!res.headersSent) fake.send(res, 500, statusBody(500, "InternalError", String(err)));
        else res.destroy();
      });
    });
    await new Promise<void>((resolve) => fake.server?.listen(0, "127.0.0.1", resolve));
    fake.port = (fake.server.address() as AddressInfo).port;
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A KubeConfig for this server; `user` becomes the bearer token, so actions say who made them. */
  kubeConfig(user = "test"): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "fake", server: this.url, skipTLSVerify: true }],
      users: [{ name: user, token: user }],
      contexts: [{ name: "fake", cluster: "fake", user: user }],
      currentContext: "fake",
    });
    return kc;
  }

  /** Every write of `resource` is checked with `validate` (e.g. against a CRD schema): errors are a 422. */
  setValidator(resource: string, validate: (object: KubeObject) => string[]): void {
    this.validators.set(resource, validate);
  }

  async close(): Promise<void> {
    this.endWatches();
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  /** Empties the store, history, failures and actions (between table rows). */
  reset(): void {
    this.endWatches();
    this.store.clear();
    this.history = [];
    this.oldestKept = 0;
    this.failures = [];
    this.actions.length = 0;
  }

  // ---- test-side access (not recorded as actions) ----

  /** Stores objects as they would be after earlier writes: status kept, uid/resourceVersion filled in. */
  seed(...objects: KubeObject[]): void {
    for (const object of objects) {
      const type = this.typeOfObject(object);
      const copy = clone(object);
      copy.metadata.uid ??= randomUUID();
      copy.metadata.creationTimestamp ??= now();
      copy.metadata.generation ??= 1;
      copy.metadata.resourceVersion = String(++this.rv);
      this.put(type.plural, copy, "ADDED");
    }
  }

  get(resource: string, namespace: string, name: string): KubeObject | undefined {
    const object = this.bucket(resource).get(`${namespace}/${name}`);
    return object === undefined ? undefined : clone(object);
  }

  list(resource: string, namespace?: string): KubeObject[] {
    return [...this.bucket(resource).values()]
      .filter((o) => namespace === undefined || o.metadata.namespace === namespace)
      .map(clone);
  }

  /** Changes an object as another client would (kubectl edit): a new resourceVersion and a watch event. */
  edit(resource: string, namespace: string, name: string, change: (object: KubeObject) => void): KubeObject {
    const old = this.bucket(resource).get(`${namespace}/${name}`);
    if (!old) throw new Error(`no ${resource} ${namespace}/${name}`);
    const next = clone(old);
    change(next);
    if (!same(old.spec, next.spec)) next.metadata.generation = (old.metadata.generation ?? 1) + 1;
    next.metadata.resourceVersion = String(++this.rv);
    this.put(resource, next, "MODIFIED", old);
    return clone(next);
  }

  /** Deletes as another client would, with the garbage collector's cascade. */
  remove(resource: string, namespace: string, name: string): void {
    const object = this.bucket(resource).get(`${namespace}/${name}`);
    if (!object) throw new Error(`no ${resource} ${namespace}/${name}`);
    this.deleteCascading(resource, object);
  }

  failNext(failure: InducedFailure): void {
    this.failures.push({ ...failure, left: failure.times ?? 1 });
  }

  /** Ends every open watch stream, as an API server restart or a load balancer timeout would. */
  endWatches(): void {
    for (const watcher of this.watchers) watcher.res.end();
    this.watchers.clear();
  }

  /** Forgets the event history (etcd compaction): a watch resumed from an older resourceVersion gets 410. */
  compact(): void {
    this.history = [];
    this.oldestKept = this.rv;
  }

  /** Writes by `user` (create, update, delete), leaving out reads and failed requests. */
  writesBy(user: string): Action[] {
    return this.actions.filter(
      (a) =>
        a.user === user &&
        (a.verb === "create" || a.verb === "update" || a.verb === "delete") &&
        a.code < 300,
    );
  }

  // ---- HTTP ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    const route = this.route(url.pathname);
    if (!route) {
      this.send(
        res,
        404,
        statusBody(404, "NotFound", `the server could not find the requested resource (${url.pathname})`),
      );
      return;
    }
    const { type, namespace, name, subresource } = route;
    const watch = url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1";
    const verb = this.verbOf(req.method ?? "GET", name, watch);
    const user = /^Bearer (.*)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
    let body: unknown;
    try {
      body =
        verb === "create" || verb === "update" || verb === "patch" || verb === "delete"
          ? await readJson(req)
          : undefined;
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      this.send(res, err.code, statusBody(err.code, err.reason, err.message));
      return;
    }

    const record = (code: number) =>
      this.actions.push({
        verb,
        apiGroup: type.group,
        resource: type.plural,
        subresource,
        namespace,
        name: name ?? (body as KubeObject | undefined)?.metadata?.name,
        user,
        object: body === undefined ? undefined : (clone(body) as KubeObject),
        code,
      });

    const failure = this.failures.find(
      (f) =>
        f.left > 0 &&
        f.verb === verb &&
        f.resource === type.plural &&
        f.subresource === subresource &&
        (f.user === undefined || f.user === user) &&
        (f.name === undefined || f.name === (name ?? (body as KubeObject | undefined)?.metadata?.name)),
    );
    if (failure) {
      failure.left--;
      const code = failure.code ?? 500;
      record(code);
      const reason = failure.reason ?? REASON_BY_CODE[code] ?? "InternalError";
      this.send(
        res,
        code,
        statusBody(code, reason, failure.message ?? `induced failure: ${verb} ${type.plural}`),
      );
      return;
    }

    try {
      if (verb === "watch") {
        record(200);
        this.startWatch(res, type, namespace, url);
        return;
      }
      const [code, answer] = this.apply(verb, type, namespace, name, subresource, url, body);
      record(code);
      this.send(res, code, answer);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      record(err.code);
      this.send(res, err.code, statusBody(err.code, err.reason, err.message));
    }
  }

  private apply(
    verb: Verb,
    type: ResourceType,
    namespace: string | undefined,
    name: string | undefined,
    subresource: string | undefined,
    url: URL,
    body: unknown,
  ): [number, unknown] {
    const bucket = this.bucket(type.plural);
    const key = `${namespace ?? ""}/${name ?? ""}`;
    const notFound = () =>
      new HttpError(
        404,
        "NotFound",
        `${type.plural}${type.group ? `.${type.group}` : ""} "${name}" not found`,
      );
    switch (verb) {
      case "list": {
        const selector = parseLabelSelector(url.searchParams.get("labelSelector"));
        const items = [...bucket.values()].filter(
          (o) =>
            (namespace === undefined || o.metadata.namespace === namespace) && selector(o.metadata.labels),
        );
        return [
          200,
          {
            apiVersion: type.group ? `${type.group}/${type.version}` : type.version,
            kind: `${type.kind}List`,
            metadata: { resourceVersion: String(this.rv) },
            items,
          },
        ];
      }
      case "get": {
        const object = bucket.get(key);
        if (!object) throw notFound();
        return [200, object];
      }
      case "create": {
        if (subresource) throw new HttpError(405, "MethodNotAllowed", "create on a subresource");
        const object = this.checkBody(body, type);
        if (object.metadata.namespace !== undefined && object.metadata.namespace !== namespace) {
          throw new HttpError(
            400,
            "BadRequest",
            "the namespace of the object does not match the namespace of the request",
          );
        }
        object.metadata.namespace = namespace;
        if (!object.metadata.name && object.metadata.generateName) {
          object.metadata.name = object.metadata.generateName + randomUUID().slice(0, 5);
        }
        if (!object.metadata.name) throw new HttpError(422, "Invalid", "metadata.name: Required value");
        const objectKey = `${namespace ?? ""}/${object.metadata.name}`;
        if (bucket.has(objectKey)) {
          throw new HttpError(
            409,
            "AlreadyExists",
            `${type.plural}${type.group ? `.${type.group}` : ""} "${object.metadata.name}" already exists`,
          );
        }
        if (type.hasStatus) delete object.status;
        object.metadata.uid = randomUUID();
        object.metadata.creationTimestamp = now();
        object.metadata.generation = 1;
        delete object.metadata.resourceVersion;
        this.validate(type, object);
        object.metadata.resourceVersion = String(++this.rv);
        this.put(type.plural, object, "ADDED");
        return [201, object];
      }
      case "update": {
        const old = bucket.get(key);
        if (!old) throw notFound();
        const incoming = this.checkBody(body, type);
        if (incoming.metadata.name !== name)
          throw new HttpError(400, "BadRequest", "the name of the object does not match the name in the URL");
        const rv = incoming.metadata.resourceVersion;
        if (rv === undefined || rv === "") {
          if (type.requireResourceVersion) {
            throw new HttpError(
              422,
              "Invalid",
              "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            );
          }
        } else if (rv !== old.metadata.resourceVersion) {
          throw new HttpError(
            409,
            "Conflict",
            `Operation cannot be fulfilled on ${type.plural}${type.group ? `.${type.group}` : ""} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
          );
        }
        let next: KubeObject;
        if (subresource === "status") {
          next = clone(old);
          next.status = incoming.status;
        } else {
          next = incoming;
          if (type.hasStatus) next.status = clone(old.status);
          next.metadata.uid = old.metadata.uid;
          next.metadata.creationTimestamp = old.metadata.creationTimestamp;
          next.metadata.namespace = old.metadata.namespace;
          next.metadata.generation = old.metadata.generation;
          if (!same(old.spec, next.spec)) next.metadata.generation = (old.metadata.generation ?? 1) + 1;
        }
        next.metadata.resourceVersion = old.metadata.resourceVersion;
        if (same(old, next)) return [200, old];
        this.validate(type, next);
        next.metadata.resourceVersion = String(++this.rv);
        this.put(type.plural, next, "MODIFIED", old);
        return [200, next];
      }
      case "delete": {
        const object = bucket.get(key);
        if (!object) throw notFound();
        const uid = (body as { preconditions?: { uid?: string } } | undefined)?.preconditions?.uid;
        if (uid !== undefined && uid !== object.metadata.uid) {
          throw new HttpError(
            409,
            "Conflict",
            `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${object.metadata.uid}`,
          );
        }
        this.deleteCascading(type.plural, object);
        return [
          200,
          {
            kind: "Status",
            apiVersion: "v1",
            metadata: {},
            status: "Success",
            details: { name, kind: type.plural, uid: object.metadata.uid },
          },
        ];
      }
      default:
        throw new HttpError(405, "MethodNotAllowed", `${verb} is not supported by the fake API server`);
    }
  }

  private checkBody(body: unknown, type: ResourceType): KubeObject {
    if (!body || typeof body !== "object" || typeof (body as KubeObject).metadata !== "object") {
      throw new HttpError(400, "BadRequest", "the body is not an object with metadata");
    }
    const object = clone(body) as KubeObject;
    if (object.kind !== undefined && object.kind !== type.kind) {
      throw new HttpError(400, "BadRequest", `the body is a ${object.kind}, not a ${type.kind}`);
    }
    return object;
  }

  private validate(type: ResourceType, object: KubeObject): void {
    const own = type.validate?.(object) ?? {};
    if (own.badRequest) throw new HttpError(400, "BadRequest", own.badRequest);
    const invalid = [...(own.invalid ?? []), ...(this.validators.get(type.plural)?.(object) ?? [])];
    if (invalid.length > 0) {
      throw new HttpError(
        422,
        "Invalid",
        `${type.kind} "${object.metadata.name}" is invalid: ${invalid.join(", ")}`,
      );
    }
  }

  private deleteCascading(resource: string, object: KubeObject): void {
    const bucket = this.bucket(resource);
    bucket.delete(`${object.metadata.namespace ?? ""}/${object.metadata.name}`);
    const gone = clone(object);
    gone.metadata.resourceVersion = String(++this.rv);
    this.emit({ rv: this.rv, type: "DELETED", resource, object: gone });
    // The garbage collector: dependents of a deleted owner go too (background propagation).
    for (const [plural, objects] of this.store) {
      for (const dependent of [...objects.values()]) {
        if (dependent.metadata.ownerReferences?.some((ref) => ref.uid === object.metadata.uid)) {
          this.deleteCascading(plural, dependent);
        }
      }
    }
  }

  private put(resource: string, object: KubeObject, type: WatchEvent["type"], previous?: KubeObject): void {
    this.bucket(resource).set(`${object.metadata.namespace ?? ""}/${object.metadata.name}`, object);
    this.emit({
      rv: Number(object.metadata.resourceVersion),
      type,
      resource,
      object: clone(object),
      previous,
    });
  }

  private emit(event: WatchEvent): void {
    this.history.push(event);
    for (const watcher of this.watchers) this.deliver(watcher, event);
  }

  private deliver(watcher: Watcher, event: WatchEvent): void {
    if (event.resource !== watcher.resource) return;
    if (watcher.namespace !== undefined && event.object.metadata.namespace !== watcher.namespace) return;
    const now = watcher.selector(event.object.metadata.labels);
    let type: WatchEvent["type"] | undefined = event.type;
    if (event.type === "MODIFIED") {
      const before = event.previous ? watcher.selector(event.previous.metadata.labels) : true;
      type = before && now ? "MODIFIED" : now ? "ADDED" : before ? "DELETED" : undefined;
    } else if (!now) {
      type = undefined;
    }
    if (type === undefined) return;
    watcher.res.write(`${JSON.stringify({ type, object: event.object })}\n`);
  }

  private startWatch(res: ServerResponse, type: ResourceType, namespace: string | undefined, url: URL): void {
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    // Clients wait for the headers before they consider the watch open, as with the real server.
    res.flushHeaders();
    const watcher: Watcher = {
      resource: type.plural,
      namespace,
      selector: parseLabelSelector(url.searchParams.get("labelSelector")),
      res,
    };
    const from = url.searchParams.get("resourceVersion");
    if (from === null || from === "" || from === "0") {
      // "Any" resourceVersion: the current objects as ADDED, then changes.
      for (const object of this.bucket(type.plural).values()) {
        this.deliver(watcher, { rv: this.rv, type: "ADDED", resource: type.plural, object });
      }
    } else if (Number(from) < this.oldestKept) {
      const expired = statusBody(410, "Expired", `too old resource version: ${from} (${this.oldestKept})`);
      res.end(`${JSON.stringify({ type: "ERROR", object: expired })}\n`);
      return;
    } else {
      for (const event of this.history) if (event.rv > Number(from)) this.deliver(watcher, event);
    }
    this.watchers.add(watcher);
    res.on("close", () => this.watchers.delete(watcher));
  }

  private send(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  }

  private verbOf(method: string, name: string | undefined, watch: boolean): Verb {
    switch (method) {
      case "GET":
        return name === undefined ? (watch ? "watch" : "list") : "get";
      case "POST":
        return "create";
      case "PUT":
        return "update";
      case "PATCH":
        return "patch";
      case "DELETE":
        return "delete";
      default:
        return "patch";
    }
  }

  /** `/api/v1[/namespaces/ns]/plural[/name[/sub]]` and `/apis/group/version[/namespaces/ns]/plural[/name[/sub]]`. */
  private route(
    path: string,
  ): { type: ResourceType; namespace?: string; name?: string; subresource?: string } | undefined {
    const parts = path.split("/").filter(Boolean);
    let group: string;
    let version: string;
    let rest: string[];
    if (parts[0] === "api") {
      group = "";
      version = parts[1] ?? "";
      rest = parts.slice(2);
    } else if (parts[0] === "apis") {
      group = parts[1] ?? "";
      version = parts[2] ?? "";
      rest = parts.slice(3);
    } else {
      return undefined;
    }
    let namespace: string | undefined;
    if (rest[0] === "namespaces" && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const type = RESOURCE_TYPES.find(
      (t) => t.group === group && t.version === version && t.plural === rest[0],
    );
    if (!type || rest.length > 3) return undefined;
    return { type, namespace, name: rest[1], subresource: rest[2] };
  }

  private typeOfObject(object: KubeObject): ResourceType {
    const [group, version] = (object.apiVersion ?? "").includes("/")
      ? (object.apiVersion as string).split("/")
      : ["", object.apiVersion];
    const type = RESOURCE_TYPES.find(
      (t) => t.group === group && t.version === version && t.kind === object.kind,
    );
    if (!type) throw new Error(`the fake API server does not serve ${object.apiVersion} ${object.kind}`);
    return type;
  }

  private bucket(resource: string): Map<string, KubeObject> {
    let bucket = this.store.get(resource);
    if (!bucket) {
      bucket = new Map();
      this.store.set(resource, bucket);
    }
    return bucket;
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, "BadRequest", "the body is not JSON");
  }
}
