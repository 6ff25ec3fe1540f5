/** `knative-async controller`: the async KIngress reconciler. */
import { KubeConfig } from "@kubernetes/client-node";
import { createLogger } from "../lib/logger.js";
import { createRegistry } from "../lib/metrics.js";
import { runComponent } from "../lib/process.js";
import { loadControllerConfig } from "./config.js";
import { startController } from "./controller.js";

export async function main(_argv: string[]): Promise<void> {
  await runComponent("controller", async () => {
    const config = loadControllerConfig(process.env);
    const kubeConfig = new KubeConfig();
    // In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config, like kubectl.
    kubeConfig.loadFromDefault();
    return startController(config, {
      logger: createLogger("controller", { level: config.logLevel }),
      registry: createRegistry("controller"),
      kubeConfig,
    });
  });
}
