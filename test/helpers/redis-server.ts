export {
  type RedisServerProcess as TestRedisServer,
  startRedisServer,
} from "../../src/dev/redis-server.js";
