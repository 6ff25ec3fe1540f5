# One image for every command: `knative-async <command>` (controller, producer, dispatcher, consumer,
# sample-app, dlq, render). The manifests under config/ choose the command with `args`.
#
#   docker build -t registry.example.com/knative-async:0.1.0 .
#
# Build stage: install everything, compile TypeScript to dist/ (with the Lua scripts), then drop the
# development dependencies so that only what runs is copied on.
FROM node:20 AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY bin ./bin
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# Run stage: the slim Node 20 image, as the unprivileged `node` user (uid 1000, numeric so that
# Kubernetes can check runAsNonRoot), with a read-only root file system in the manifests.
FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
USER 1000:1000
ENTRYPOINT ["node", "bin/knative-async.js"]
