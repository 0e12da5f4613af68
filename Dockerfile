# kubetrail in a container: `kubetrail start` serving the kubeconfig mounted read-only at /kubeconfig.
#
#   docker build -t kubetrail .
#   docker run --rm --name kubetrail -p 127.0.0.1:17443:17443 -v "$HOME/.kube/config:/kubeconfig:ro" kubetrail
#   (umask 077 && docker exec kubetrail sh -c 'cat "$(kubetrail kubeconfig --listen 127.0.0.1:17443)"' > kubetrail.kubeconfig)
#   KUBECONFIG=kubetrail.kubeconfig kubectl get pods
#
# Listening: inside its own network namespace the proxy must listen beyond loopback to be reachable at all,
# so the default command says so explicitly (--listen 0.0.0.0:17443 --allow-non-loopback). Publish the port
# on the host's loopback only (-p 127.0.0.1:17443:17443): anyone who reaches it reaches your clusters.
# The kubeconfig that `start` writes names the container's address; the host's kubectl needs one naming the
# published port, written by `kubetrail kubeconfig --listen 127.0.0.1:17443` in the same container (same
# state dir, so the same local CA), as above. docs/docker.md has the whole story, compose included.
#
# The mounted kubeconfig must be self-contained (certificates inline: `kubectl config view --raw --flatten
# --minify`) and readable by the container's user (uid 1000, `node`; `docker run --user "$(id -u)"` runs as
# you), and its servers reachable from the container (127.0.0.1 is the container itself: see docs/docker.md).
#
# Checked without a container engine by test/integration/packaging.test.ts, which replays these steps.

ARG NODE_IMAGE=node:24-bookworm-slim
# The build stage is the full image (the same Debian), for its C compiler: native/build.sh builds the
# malloc_trim addon that gives a flood of connections' memory back (src/proxy/reclaim.ts).
ARG NODE_BUILD_IMAGE=node:24-bookworm

FROM ${NODE_BUILD_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY native/build.sh native/trim.c ./native/
RUN sh native/build.sh && test -f native/build/trim.node
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN node_modules/.bin/tsc -p tsconfig.build.json \
 && chmod 0755 dist/bin/kubetrail.js dist/bin/kubectl-trail.js \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    KUBECONFIG=/kubeconfig \
    KUBETRAIL_STATE_DIR=/state/kubetrail
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/native/build ./native/build
COPY package.json ./
COPY config ./config
# `kubetrail` on PATH for `docker exec` (kubeconfig, doctor); /state for any uid (each makes its own 0700 dir).
RUN ln -s /app/dist/bin/kubetrail.js /usr/local/bin/kubetrail \
 && mkdir -m 1777 /state
USER node
EXPOSE 17443
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD ["node", "-e", "const fs=require('node:fs'),d=process.env.KUBETRAIL_STATE_DIR;require('node:https').get({host:'127.0.0.1',port:17443,path:'/.kubetrail/v1/status',servername:'localhost',ca:fs.readFileSync(d+'/ca.crt'),headers:{'x-kubetrail-token':fs.readFileSync(d+'/control-token','utf8').trim()}},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
ENTRYPOINT ["node", "--max-semi-space-size=2", "--expose-gc", "/app/dist/bin/kubetrail.js"]
CMD ["start", "--listen", "0.0.0.0:17443", "--allow-non-loopback"]
