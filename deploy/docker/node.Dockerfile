# pingora-node in an empty image. Build context: a directory holding the
# static binary (CGO_ENABLED=0) as "pingora-node" and an empty directory
# "data"; up.sh prepares both. No shell, no libc, no package manager: the
# binary is the whole image, and it is its own client
# (docker exec CONTAINER /pingora-node status).
FROM scratch
COPY pingora-node /pingora-node
# The data directory (raft log and snapshots) belongs to the unprivileged
# user; a volume mounted here takes this owner when it is new.
COPY --chown=65532:65532 data/ /data/
# /tmp for the default upgrade socket (pingora-node-NAME.sock).
COPY --chown=65532:65532 data/ /tmp/
# Numeric: an empty image has no /etc/passwd to look a name up in.
USER 65532:65532
WORKDIR /data
# proxy 8080, admin 9090, gossip 7946 (TCP and UDP), cluster 7947 (RPC and raft).
EXPOSE 8080 9090 7946 7946/udp 7947
# No HEALTHCHECK: the orchestrator probes /healthz and /readyz itself.
ENTRYPOINT ["/pingora-node"]
CMD ["help"]
