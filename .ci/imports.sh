#!/usr/bin/env bash
# Fails when a package imports what STYLE.md section 1 forbids. The rules are
# in forbidden-imports.txt: "package-prefix forbidden-import-prefix", where
# the prefix !stdlib stands for any import outside the standard library.
# Only non-test imports count (test files may import test helpers).
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
rules=$(grep -v '^#' .ci/forbidden-imports.txt | grep -v '^$')
status=0
while read -r pkg imports; do
  rel=${pkg#"$mod"}; rel=${rel#/}
  while read -r prefix forbidden; do
    [ -z "$prefix" ] && continue
    case "$rel" in "$prefix"|"$prefix"/*) ;; *) continue ;; esac
    # node/config is more specific than node: skip node's rules for it.
    if [ "$prefix" = node ] && [[ "$rel" == node/config* ]]; then continue; fi
    for imp in $imports; do
      if [ "$forbidden" = '!stdlib' ]; then
        first=${imp%%/*}
        if [[ "$first" == *.* ]]; then
          echo "forbidden import: $rel imports $imp (rule: $prefix imports only the standard library)"
          status=1
        fi
        continue
      fi
      case "$imp" in
        "$forbidden"|"$forbidden"/*)
          # proxy/... may import other proxy/... packages
          if [[ "$imp" == "$mod/proxy"* && "$rel" == proxy* ]]; then continue; fi
          if [[ "$imp" == "$mod/ketama" && "$rel" == proxy* ]]; then continue; fi
          if [[ "$imp" == "$mod/clock" ]]; then
            case "$rel" in ketama*|tinyufo*|clock*|ratelimit/estimator*) ;; *) continue ;; esac
          fi
          echo "forbidden import: $rel imports $imp (rule: $prefix must not import $forbidden)"
          status=1 ;;
      esac
    done
  done <<< "$rules"
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...)
[ $status -eq 0 ] && echo "imports: ok"
exit $status
