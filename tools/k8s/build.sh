#!/usr/bin/env bash
# Build a local Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler) and etcd from the Go module proxy, for kredis's integration tests.
#
# Output: ${KREDIS_K8S_CACHE:-$HOME/.cache/kredis/k8s}/<k8s-version>/{kube-apiserver,
#         kube-controller-manager,kube-scheduler,etcd,VERSIONS}
# Nothing is written inside the repository. See tools/k8s/README.md.
#
# Usage: tools/k8s/build.sh            # build (or print "up to date")
#        K8S_VERSION=1.36.3 tools/k8s/build.sh
# The last line printed on success is "KREDIS_K8S_BIN=<dir>" for callers to parse.
set -euo pipefail

# ---- pinned versions (override through the environment) ---------------------------
K8S_VERSION="${K8S_VERSION:-1.37.2}"                  # k8s.io/kubernetes v$K8S_VERSION
K8S_FALLBACK_VERSION="${K8S_FALLBACK_VERSION-1.36.3}" # tried when a needed module is refused; "" disables
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"                # go.etcd.io/etcd/server/v3 v$ETCD_VERSION
# -------------------------------------------------------------------------------------

CACHE_ROOT="${KREDIS_K8S_CACHE:-$HOME/.cache/kredis/k8s}"
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler)
export PATH="$PATH:/usr/local/go/bin"
# Never fetch a different Go toolchain behind our back; override with GOTOOLCHAIN=goX.Y.Z.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export CGO_ENABLED=0 GO111MODULE=on GOWORK=off

log() { printf '[k8s-build] %s\n' "$*"; }
die() { printf '[k8s-build] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

command -v go >/dev/null || die "go not found (expected Go >= 1.26 on PATH or in /usr/local/go/bin)"
command -v python3 >/dev/null || die "python3 not found (used to read go's JSON output)"
GO_VERSION="$(go env GOVERSION)"
NICE=(nice -n 10)
TIMEV=()
[[ -x /usr/bin/time ]] && TIMEV=(/usr/bin/time -v)

case "$CACHE_ROOT" in /*) ;; *) die "KREDIS_K8S_CACHE must be an absolute path (got '$CACHE_ROOT')";; esac
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
CACHE_ROOT="$(realpath -m "$CACHE_ROOT")"
case "$CACHE_ROOT/" in "$REPO_ROOT"/*) die "cache dir $CACHE_ROOT is inside the repository $REPO_ROOT; choose another KREDIS_K8S_CACHE";; esac
mkdir -p "$CACHE_ROOT"

# Go's module and build caches live under the cache dir too (one directory to keep in CI,
# one rm -rf to reset); -modcacherw keeps the module cache deletable with plain rm -rf.
# Point KREDIS_K8S_GOMODCACHE / KREDIS_K8S_GOCACHE elsewhere to share existing Go caches.
export GOMODCACHE="${KREDIS_K8S_GOMODCACHE:-$CACHE_ROOT/gomodcache}"
export GOCACHE="${KREDIS_K8S_GOCACHE:-$CACHE_ROOT/gocache}"
export GOFLAGS="-modcacherw${GOFLAGS:+ $GOFLAGS}"

# One build at a time per cache dir (CI and a test fixture may both call us).
if command -v flock >/dev/null; then
  exec 9>"$CACHE_ROOT/.lock"
  flock 9
fi

STAGE=""
cleanup() { [[ -n "$STAGE" && -d "$STAGE" ]] && rm -rf "$STAGE"; return 0; }
trap cleanup EXIT

# ---- helpers ---------------------------------------------------------------------------

# Version line a binary reports, or "" if it does not run.
kube_version_of() { "$1" --version 2>/dev/null | awk '{print $2}' || true; }
etcd_version_of() { "$1" --version 2>/dev/null | awk '/^etcd Version:/ {print $3}' || true; }

# up_to_date DIR K8S ETCD -> 0 when the four binaries exist, the stamp matches and the
# binaries report the expected versions.
up_to_date() {
  local dir="$1" kv="$2" ev="$3" b
  [[ -f "$dir/VERSIONS" ]] || return 1
  grep -qx "kubernetes=v$kv" "$dir/VERSIONS" || return 1
  grep -qx "etcd=v$ev" "$dir/VERSIONS" || return 1
  for b in "${KUBE_BINS[@]}"; do
    [[ -x "$dir/$b" ]] || return 1
    [[ "$(kube_version_of "$dir/$b")" == "v$kv" ]] || return 1
  done
  [[ -x "$dir/etcd" && "$(etcd_version_of "$dir/etcd")" == "$ev" ]]
}

kube_ok() {
  local dir="$1" kv="$2" b
  for b in "${KUBE_BINS[@]}"; do
    [[ -x "$dir/$b" && "$(kube_version_of "$dir/$b")" == "v$kv" ]] || return 1
  done
}

print_versions() {
  local dir="$1" b
  for b in "${KUBE_BINS[@]}"; do printf '  %-24s %s\n' "$b" "$("$dir/$b" --version)"; done
  "$dir/etcd" --version | sed 's/^/  etcd: /'
}

# Print "module@version (HTTP status: server message)" for every refused download found in
# go's output files (plain text, or the JSON objects of `go mod download -json`).
refused_modules() {
  python3 - "$@" <<'PY'
import json, re, sys
texts = []
for name in sys.argv[1:]:
    try:
        raw = open(name, errors="replace").read()
    except OSError:
        continue
    dec, i, objs = json.JSONDecoder(), 0, []
    while raw.lstrip().startswith("{"):  # a stream of JSON objects: use their "Error" fields
        j = raw.find("{", i)
        if j < 0:
            break
        try:
            obj, i = dec.raw_decode(raw, j)
        except ValueError:
            objs = []
            break
        objs.append(obj)
    if objs:
        texts += [o["Error"] for o in objs if isinstance(o, dict) and o.get("Error")]
    else:
        texts.append(raw)
pat = re.compile(r"reading (https?://\S+?)/@v/(\S+?)\.(info|mod|zip): (\d{3}[^\n]*)(?:\n\s*server response: ([^\n]*))?")
seen = []
for text in texts:
    for m in pat.finditer(text):
        url, ver, _, status, msg = m.groups()
        path = url.split("/", 3)[3] if url.count("/") >= 3 else url
        path = re.sub(r"!([a-z])", lambda g: g.group(1).upper(), path)  # undo Go's case-encoding
        item = f"{path}@{ver} ({status.strip()}{': ' + msg.strip() if msg else ''})"
        if item not in seen:
            seen.append(item)
print("\n".join(seen))
PY
}

# served MODULE VERSION LOG -> 0 if the proxy serves it; 1 if it refuses it (403/404/410);
# dies on any other error (network, ...). Runs outside any module.
served() {
  local mod="$1" ver="$2" out="$3" probe
  probe="$(mktemp -d)"
  if (cd "$probe" && go list -m -json "$mod@$ver") >"$out" 2>&1; then rm -rf "$probe"; return 0; fi
  rm -rf "$probe"
  if grep -Eq ' (403|404|410) |not available|not found|unknown revision|invalid version' "$out"; then return 1; fi
  die "could not query $mod@$ver from the Go module proxy: $(tr '\n' ' ' <"$out")"
}

# ---- phase 1: kube-* module resolution + download ---------------------------------------

# prepare_kube VERSION -> 0 when the wrapper module for VERSION resolved and all packages of
# the three commands were downloaded; 1 (with $REFUSED set) when a needed module was refused.
REFUSED=""
prepare_kube() {
  local kv="$1" staging_ver="v0.${1#1.}" wd gomod_file info m
  wd="$CACHE_ROOT/work/k8s-$kv"
  mkdir -p "$wd/logs"
  rm -rf "$wd/stub" "$wd/go.mod"   # go.sum is kept: it only saves checksum look-ups

  log "reading the staging module list from k8s.io/kubernetes@v$kv (Go proxy .mod file)"
  if ! (cd "$wd" && go mod download -json "k8s.io/kubernetes@v$kv") >"$wd/logs/kubernetes-download.json" 2>"$wd/logs/kubernetes-download.err"; then
    REFUSED="$(refused_modules "$wd/logs/kubernetes-download.json" "$wd/logs/kubernetes-download.err")"
    [[ -n "$REFUSED" ]] || REFUSED="k8s.io/kubernetes@v$kv: $(cat "$wd/logs/kubernetes-download.json" "$wd/logs/kubernetes-download.err" | tr '\n\t' '  ')"
    return 1
  fi
  read -r gomod_file info < <(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["GoMod"], d["Info"])' <"$wd/logs/kubernetes-download.json")
  [[ -f "$gomod_file" && -f "$info" ]] || die "go mod download -json k8s.io/kubernetes@v$kv gave no GoMod/Info file"
  STAGING=()
  while read -r m; do STAGING+=("$m"); done < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod_file")
  [[ ${#STAGING[@]} -gt 0 ]] || die "found no './staging/' replace lines in $gomod_file (k8s.io/kubernetes@v$kv)"
  KUBE_RELEASE_TIME="$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("Time",""))' <"$info")"

  printf 'module kredis.local/k8s-control-plane\n\ngo 1.26.0\n' >"$wd/go.mod"
  STUBS=()
  for m in "${STAGING[@]}"; do
    if served "$m" "$staging_ver" "$wd/logs/probe.log"; then
      (cd "$wd" && go mod edit -replace="$m=$m@$staging_ver") || die "go mod edit -replace $m failed"
    else
      # Not served: point it at an empty local module. Harmless as long as none of the three
      # commands imports a package from it (checked below by the package load).
      mkdir -p "$wd/stub/$m"
      printf 'module %s\n' "$m" >"$wd/stub/$m/go.mod"
      (cd "$wd" && go mod edit -replace="$m=./stub/$m") || die "go mod edit -replace $m (stub) failed"
      STUBS+=("$m")
    fi
  done
  log "  ${#STAGING[@]} staging modules -> $staging_ver; stubbed (not served): ${STUBS[*]:-none}"

  local pkgs=() b
  for b in "${KUBE_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b@v$kv"); done
  log "go get ${pkgs[*]}"
  if ! (cd "$wd" && go get "${pkgs[@]}") >"$wd/logs/go-get.log" 2>&1; then
    REFUSED="$(refused_modules "$wd/logs/go-get.log")"
    [[ -n "$REFUSED" ]] || REFUSED="go get failed (see $wd/logs/go-get.log): $(tail -n 8 "$wd/logs/go-get.log" | tr '\n' ' ')"
    return 1
  fi
  # Load every package the three commands import: this fetches the remaining module zips and
  # fails here (not mid-build) if any import is unresolvable, e.g. one inside a stub.
  if ! (cd "$wd" && go list -mod=mod -deps -f '{{with .Module}}{{.Path}}@{{.Version}}{{end}}' "${pkgs[@]%@*}") >"$wd/logs/deps.txt" 2>"$wd/logs/go-list.log"; then
    REFUSED="$(refused_modules "$wd/logs/go-list.log")"
    [[ -n "$REFUSED" ]] || REFUSED="loading packages failed (see $wd/logs/go-list.log): $(tail -n 8 "$wd/logs/go-list.log" | tr '\n' ' ')"
    return 1
  fi
  for m in "${STUBS[@]}"; do
    if grep -q "^$m@" "$wd/logs/deps.txt"; then REFUSED="$m@$staging_ver is imported by the control plane but not served"; return 1; fi
  done
  KUBE_WD="$wd"
  KUBE_MODULES="$(sort -u "$wd/logs/deps.txt" | grep -c . || true)"
  return 0
}

# Run a build command under nice, and under /usr/bin/time -v (report in $1) when present.
timed_build() {
  local tlog="$1"; shift
  rm -f "$tlog"
  if [[ ${#TIMEV[@]} -gt 0 ]]; then
    "${TIMEV[@]}" -o "$tlog" "${NICE[@]}" "$@"
  else
    "${NICE[@]}" "$@"
  fi
}

# ", peak RSS N MiB" from a /usr/bin/time -v report, or nothing.
fmt_peak() {
  [[ -f "$1" ]] || return 0
  awk -F': ' '/Maximum resident set size/ { printf ", peak RSS %.0f MiB", $2 / 1024 }' "$1"
}

# ---- main ------------------------------------------------------------------------------

T_START="$(now)"
OUT="$CACHE_ROOT/$K8S_VERSION"
if up_to_date "$OUT" "$K8S_VERSION" "$ETCD_VERSION"; then
  log "up to date: $OUT (kubernetes v$K8S_VERSION, etcd v$ETCD_VERSION)"
  print_versions "$OUT"
  log "checked in $(secs "$T_START" "$(now)") s"
  echo "KREDIS_K8S_BIN=$OUT"
  exit 0
fi

log "building kubernetes v$K8S_VERSION + etcd v$ETCD_VERSION with $GO_VERSION into $OUT"
log "module cache $(go env GOMODCACHE), build cache $(go env GOCACHE)"
STAGE="$(mktemp -d "$CACHE_ROOT/.stage.XXXXXX")"
NOTES="$CACHE_ROOT/build-notes.log"
declare -a SUMMARY=()

BUILT_K8S="$K8S_VERSION"
if kube_ok "$OUT" "$K8S_VERSION"; then
  log "kube-* v$K8S_VERSION already built; only etcd needs work"
  KUBE_WD=""
else
  T0="$(now)"
  if ! prepare_kube "$K8S_VERSION"; then
    msg="modules for kubernetes v$K8S_VERSION refused by the Go proxy: ${REFUSED//$'\n'/; }"
    printf '%s %s\n' "$(date -u +%FT%TZ)" "$msg" >>"$NOTES"
    if [[ -z "$K8S_FALLBACK_VERSION" || "$K8S_FALLBACK_VERSION" == "$K8S_VERSION" ]]; then
      die "$msg"
    fi
    log "WARNING: $msg"
    log "WARNING: falling back to kubernetes v$K8S_FALLBACK_VERSION (recorded in $NOTES)"
    BUILT_K8S="$K8S_FALLBACK_VERSION"
    OUT="$CACHE_ROOT/$BUILT_K8S"
    if up_to_date "$OUT" "$BUILT_K8S" "$ETCD_VERSION"; then
      log "up to date: $OUT (fallback kubernetes v$BUILT_K8S, etcd v$ETCD_VERSION)"
      print_versions "$OUT"
      echo "KREDIS_K8S_BIN=$OUT"
      exit 0
    fi
    if ! prepare_kube "$BUILT_K8S"; then
      msg2="fallback kubernetes v$BUILT_K8S failed too: ${REFUSED//$'\n'/; }"
      printf '%s %s\n' "$(date -u +%FT%TZ)" "$msg2" >>"$NOTES"
      die "$msg; $msg2"
    fi
    printf '%s fell back to kubernetes v%s\n' "$(date -u +%FT%TZ)" "$BUILT_K8S" >>"$NOTES"
  fi
  T1="$(now)"
  SUMMARY+=("modules (kube-*): $(secs "$T0" "$T1") s, $KUBE_MODULES modules in the import graph")
  log "module resolution + download done in $(secs "$T0" "$T1") s"
fi

# ---- phase 2: build kube-* -------------------------------------------------------------
if [[ -n "${KUBE_WD:-}" ]]; then
  minor="$(cut -d. -f2 <<<"$BUILT_K8S")"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$BUILT_K8S -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    [[ -n "${KUBE_RELEASE_TIME:-}" ]] && ldflags+=" -X $pkg.buildDate=$KUBE_RELEASE_TIME"
  done
  pkgs=()
  for b in "${KUBE_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  log "go build (nice -n 10) ${pkgs[*]}"
  T0="$(now)"
  if ! (cd "$KUBE_WD" && timed_build "$KUBE_WD/logs/time-build.txt" \
          go build -trimpath -mod=mod -ldflags "$ldflags" -o "$STAGE/" "${pkgs[@]}") >"$KUBE_WD/logs/go-build.log" 2>&1; then
    tail -n 30 "$KUBE_WD/logs/go-build.log" >&2
    die "go build of kubernetes v$BUILT_K8S failed (full log: $KUBE_WD/logs/go-build.log)"
  fi
  T1="$(now)"
  SUMMARY+=("build kube-apiserver/kube-controller-manager/kube-scheduler: $(secs "$T0" "$T1") s$(fmt_peak "$KUBE_WD/logs/time-build.txt")")
  log "kube-* built in $(secs "$T0" "$T1") s$(fmt_peak "$KUBE_WD/logs/time-build.txt")"
  for b in "${KUBE_BINS[@]}"; do
    [[ "$(kube_version_of "$STAGE/$b")" == "v$BUILT_K8S" ]] || die "$b built but reports '$("$STAGE/$b" --version 2>&1 | head -n 1)', expected Kubernetes v$BUILT_K8S"
  done
fi

# ---- phase 3: etcd ---------------------------------------------------------------------
if [[ -x "$OUT/etcd" && "$(etcd_version_of "$OUT/etcd")" == "$ETCD_VERSION" ]]; then
  log "etcd v$ETCD_VERSION already built"
else
  ewd="$CACHE_ROOT/work/etcd-$ETCD_VERSION"
  mkdir -p "$ewd/logs"
  rm -f "$ewd/go.mod"
  printf 'module kredis.local/etcd\n\ngo 1.26.0\n' >"$ewd/go.mod"
  T0="$(now)"
  log "go get go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  if ! (cd "$ewd" && go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" && \
        go list -mod=mod -deps go.etcd.io/etcd/server/v3 >/dev/null) >"$ewd/logs/go-get.log" 2>&1; then
    r="$(refused_modules "$ewd/logs/go-get.log")"
    tail -n 15 "$ewd/logs/go-get.log" >&2
    die "resolving go.etcd.io/etcd/server/v3@v$ETCD_VERSION failed${r:+; refused: ${r//$'\n'/; }} (log: $ewd/logs/go-get.log). Try another served 3.6.x: go list -m -versions go.etcd.io/etcd/server/v3"
  fi
  T1="$(now)"
  SUMMARY+=("modules (etcd): $(secs "$T0" "$T1") s")
  log "go build (nice -n 10) go.etcd.io/etcd/server/v3"
  if ! (cd "$ewd" && timed_build "$ewd/logs/time-build.txt" \
          go build -trimpath -mod=mod -ldflags "-s -w" -o "$STAGE/etcd" go.etcd.io/etcd/server/v3) >"$ewd/logs/go-build.log" 2>&1; then
    tail -n 30 "$ewd/logs/go-build.log" >&2
    die "go build of go.etcd.io/etcd/server/v3@v$ETCD_VERSION failed (full log: $ewd/logs/go-build.log)"
  fi
  T2="$(now)"
  SUMMARY+=("build etcd: $(secs "$T1" "$T2") s$(fmt_peak "$ewd/logs/time-build.txt")")
  log "etcd built in $(secs "$T1" "$T2") s$(fmt_peak "$ewd/logs/time-build.txt")"
  [[ "$(etcd_version_of "$STAGE/etcd")" == "$ETCD_VERSION" ]] || die "etcd built but reports '$("$STAGE/etcd" --version 2>&1 | head -n 1)', expected $ETCD_VERSION"
fi

# ---- install ----------------------------------------------------------------------------
mkdir -p "$OUT"
old_stubs=""
if [[ -z "${KUBE_WD:-}" && -f "$OUT/VERSIONS" ]]; then   # kube-* kept: keep what the stamp said about them
  old_stubs="$(sed -n 's/^stubbed_staging_modules=//p' "$OUT/VERSIONS")"
fi
rm -f "$OUT/VERSIONS"
for f in "$STAGE"/*; do [[ -e "$f" ]] && mv -f "$f" "$OUT/"; done
{
  echo "kubernetes=v$BUILT_K8S"
  echo "etcd=v$ETCD_VERSION"
  echo "go=$GO_VERSION"
  echo "built=$(date -u +%FT%TZ)"
  stubs="${STUBS[*]:-$old_stubs}"
  [[ -n "$stubs" ]] && echo "stubbed_staging_modules=$stubs"
  true
} >"$OUT/VERSIONS"
up_to_date "$OUT" "$BUILT_K8S" "$ETCD_VERSION" || die "installed binaries in $OUT do not report the expected versions"

log "built into $OUT:"
for b in "${KUBE_BINS[@]}" etcd; do printf '  %-24s %s\n' "$b" "$(du -h "$OUT/$b" | cut -f1)"; done
log "timings:"
for s in "${SUMMARY[@]}"; do printf '  %s\n' "$s"; done
printf '  total: %s s\n' "$(secs "$T_START" "$(now)")"
log "versions:"
print_versions "$OUT"
[[ "$BUILT_K8S" != "$K8S_VERSION" ]] && log "NOTE: built the fallback kubernetes v$BUILT_K8S instead of v$K8S_VERSION (see $NOTES)"
echo "KREDIS_K8S_BIN=$OUT"
