/** The secret the tests' dispatchers sign events with and their consumers check (EVENT_SIGNING_SECRETS). */
export const TEST_SIGNING_SECRET = "test-signing-secret-0123456789";
export const SIGNING_ENV = { EVENT_SIGNING_SECRETS: TEST_SIGNING_SECRET } as const;

/**
 * For consumers that the tests feed events by hand, as eventing-redis's RedisStreamSource would: they
 * accept unsigned events, the documented setting for that sender.
 */
export const UNSIGNED_ENV = { EVENT_ACCEPT_UNSIGNED: "true" } as const;
