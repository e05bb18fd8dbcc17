# Shared by scripts/stack and scripts/services: messages, ports and pid files of the local
# processes they run. Source it after setting LOG_TAG.

say() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() {
  printf '[%s] error: %s\n' "$LOG_TAG" "$1" >&2
  [ $# -gt 1 ] && printf '[%s]   what to do: %s\n' "$LOG_TAG" "$2" >&2
  exit 1
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether process <pid> runs. A killed child that its parent has not reaped yet (a zombie)
# still answers `kill -0`, so its state is read too: Z (zombie) and X (dead) do not run.
pid_running() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  if [ -r "/proc/$1/stat" ]; then
    state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)"
  else
    state="$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)"
  fi
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

pid_alive() { [ -f "$1" ] && pid_running "$(cat "$1")"; }

# SIGTERM, up to <seconds> to exit, then SIGKILL; the pid file goes either way.
stop_pid() { # pidfile name seconds
  local pidfile="$1" name="$2" wait_s="$3" pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; say "$name is not running"; return 0; }
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((wait_s * 5))); do pid_running "$pid" || break; sleep 0.2; done
  if pid_running "$pid"; then
    say "$name did not stop within ${wait_s}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "$name stopped"
}

# librdkafka links the system OpenSSL (TLS, SASL) and libcurl (OAUTHBEARER's OIDC): their
# development files are needed to build. Installs them when missing and allowed to (root
# with apt), else says what to run.
require_build_libraries() {
  pkg-config --exists openssl libcurl 2>/dev/null && return 0
  local packages=(libssl-dev libcurl4-openssl-dev pkg-config)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${packages[*]} (once) ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }
  else
    die "OpenSSL's or libcurl's development files are missing (librdkafka links them)" \
      "sudo apt-get install -y ${packages[*]}"
  fi
}
