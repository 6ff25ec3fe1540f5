/**
 * The target rule for tests: every stand-in app listens on a loopback port, and a loopback host in the
 * allow list stands in for a cluster-local Service name. Any port, since the tests pick free ones.
 */
import { parseHostPattern, type TargetRules } from "../../src/lib/target.js";

/** `.invalid` never resolves (RFC 2606): the tests of unreachable hosts use it. */
export const LOOPBACK_HOSTS = "127.0.0.1,localhost,[::1],*.invalid";

/** For components configured from the environment. */
export const LOOPBACK_TARGET_ENV = { ALLOWED_TARGET_HOSTS: LOOPBACK_HOSTS } as const;

/** For code given rules directly (a replayer, a deliverer). */
export const LOOPBACK_TARGETS: TargetRules = {
  allowed: LOOPBACK_HOSTS.split(",").map(parseHostPattern),
  forbidden: [],
};
