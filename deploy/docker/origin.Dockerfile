# The sample origin (deploy/docker/origin) in an empty image. Build
# context: a directory holding the static binary as "origin"; up.sh
# prepares it.
FROM scratch
COPY origin /origin
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/origin", "-addr", ":8080"]
