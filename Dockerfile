# kubetrail in a container: `kubetrail start` serving the kubeconfig mounted read-only at /kubeconfig.
# Build: docker build -t kubetrail .
# Run:   docker run --rm -p 127.0.0.1:17443:17443 -v ~/.kube/config:/kubeconfig:ro kubetrail
# Inside a container the proxy must listen beyond its own loopback to be reachable at all, so the image
# says so explicitly (--allow-non-loopback); publish the port on the host's loopback only, as above.

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN node_modules/.bin/tsc -p tsconfig.build.json \
 && npm prune --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    KUBETRAIL_STATE_DIR=/home/node/.local/state/kubetrail
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
USER node
EXPOSE 17443
ENTRYPOINT ["node", "/app/dist/bin/kubetrail.js"]
CMD ["start", "--kubeconfig", "/kubeconfig", "--listen", "0.0.0.0:17443", "--allow-non-loopback"]
