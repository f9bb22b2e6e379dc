# Sourced by scripts/rabbitmq and scripts/rabbitmq-cluster: starting and stopping throw-away nodes of Debian's
# rabbitmq-server on loopback, with a private epmd, and the process handling both need. Not a script of its own.
#
# The sourcing script sets `me` (its name, for the log lines) before sourcing, runs as root or with sudo, and
# keeps each node's state itself (its name, its environment in an array, the pid of its wrapper and of its VM);
# the functions here take that state as arguments, so one script can hold one node and another three.
# Debian's /usr/sbin/rabbitmq-server and rabbitmqctl refuse users other than root and `rabbitmq`, and switch to
# the `rabbitmq` user (su resets HOME to /var/lib/rabbitmq, so an environment variable cannot move its files).
# shellcheck shell=bash
# shellcheck disable=SC2317 # shellcheck 0.9 takes the functions only the EXIT traps call for dead code
# shellcheck disable=SC2034 # the variables set for the sourcing script (and through namerefs) are used there
# shellcheck disable=SC2154 # `me` is the sourcing script's

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
epmd_bin=$(command -v epmd || echo /usr/lib/erlang/bin/epmd)

log() { echo "$me: $*" >&2; }
# Milliseconds since $1 (a value of $EPOCHREALTIME with its dot removed), for the timing messages.
elapsed_ms() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }

# True while process $1 exists and is not a zombie. /proc instead of `kill -0`: it also sees processes
# of the rabbitmq user when we are not root, and a zombie left to a non-reaping PID 1 counts as gone.
alive() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) } # the fields after "(comm)", which may itself hold spaces
  [ "${stat%% *}" != Z ]
}

# Prints $1 and every process below it. Read from /proc because procps (pgrep, ps) is not on every
# Debian image, and by ancestry because that is the one reliable link from what we started to the
# node's beam.smp (the Debian wrapper puts su, sh and the rabbitmq-server script in between).
process_tree() {
  local -A children=()
  local stat rest ppid pid queue=("$1")
  for stat in /proc/[0-9]*/stat; do
    { read -r rest <"$stat"; } 2>/dev/null || continue
    pid=${stat#/proc/} pid=${pid%/stat}
    rest=${rest##*) }
    read -r _ ppid _ <<<"$rest"
    children[$ppid]+="$pid "
  done
  while ((${#queue[@]})); do
    pid=${queue[0]} queue=("${queue[@]:1}")
    echo "$pid"
    # shellcheck disable=SC2206 # the list is space-separated pids
    queue+=(${children[$pid]:-})
  done
}

any_alive() {
  local pid
  for pid in "$@"; do alive "$pid" && return 0; done
  return 1
}

# Waits up to $1 seconds for all the pids that follow to be gone; fails if some remain.
wait_gone() {
  local deadline=$((SECONDS + $1))
  shift
  while any_alive "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# Sends signal $1 to those of the pids after $2 that are alive, then waits up to $2 seconds for them.
signal_and_wait() {
  local sig=$1 secs=$2 pid
  shift 2
  for pid in "$@"; do alive "$pid" && $sudo kill "-$sig" "$pid" 2>/dev/null; done
  wait_gone "$secs" "$@"
}

# Prints those of the given pids that are an Erlang VM.
vms_among() {
  local pid comm
  for pid in "$@"; do
    if { read -r comm <"/proc/$pid/comm"; } 2>/dev/null && [ "$comm" = beam.smp ]; then echo "$pid"; fi
  done
}

# Prints $1 ports the OS reports free on loopback (it picks them for a bind to port 0), space-separated. erl
# comes with rabbitmq-server, so it is there. All are held open together, so no two are the same.
free_ports() {
  erl -noshell -eval "
    Ls = [begin {ok, S} = gen_tcp:listen(0, [{ip, {127,0,0,1}}]), S end || _ <- lists:seq(1, $1)],
    io:format(\"~s~n\", [lists:join(\" \", [integer_to_list(element(2, inet:port(S))) || S <- Ls])]),
    halt()."
}

# Starts a private epmd on 127.0.0.1:$1 and sets epmd_pid; fails if it does not listen within 10 seconds.
# A private epmd: a node would otherwise start a daemonized one on 4369 (or join one that is already there),
# which outlives the node and can't be told apart from a developer's own. Not daemonized, so that $! is its
# pid. As a background job of a script it ignores SIGINT: on a Ctrl-C it stays up until the trap has stopped
# the nodes. Its stderr is dropped: it complains about the readiness probe, which connects and sends nothing.
start_epmd() {
  local port=$1 deadline=$((SECONDS + 10))
  ERL_EPMD_ADDRESS=127.0.0.1 "$epmd_bin" -port "$port" 2>/dev/null &
  epmd_pid=$!
  # It must listen before a node starts, or the node would start a daemonized epmd of its own there.
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! alive "$epmd_pid" || ((SECONDS >= deadline)); then
      log "epmd did not start on 127.0.0.1:$port"
      return 1
    fi
    sleep 0.05
  done
}

# Ends the epmd of start_epmd, if any: never one that was there before, we know ours by its pid.
stop_epmd() {
  [ -n "${epmd_pid:-}" ] || return 0
  kill -TERM "$epmd_pid" 2>/dev/null
  wait "$epmd_pid" 2>/dev/null
  return 0
}

# Fills the array named $1 with the environment of node $2 (passed with `env` to the server and to rabbitmqctl,
# since sudo would drop it from the environment): its data in $3/node (see node_directory), AMQP port $4,
# distribution port $5, the port its rabbitmqctl's own distribution listens on $6, epmd on port $7, and $8 more
# Erlang arguments for the server and the CLI alike (optional).
node_environment() {
  local -n env_out=$1
  local dir=$3 erl_args="-kernel inet_dist_use_interface {127,0,0,1}${8:+ $8}"
  env_out=(
    RABBITMQ_NODENAME="$2"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT="$4"
    RABBITMQ_DIST_PORT="$5"
    RABBITMQ_MNESIA_BASE="$dir/node/mnesia"
    RABBITMQ_LOG_BASE="$dir/node/log"
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/node/enabled_plugins"
    # Files that don't exist, so a developer's /etc/rabbitmq configuration can't change this node.
    RABBITMQ_CONF_ENV_FILE="$dir/node/rabbitmq-env.conf"
    RABBITMQ_CONFIG_FILE="$dir/node/rabbitmq.conf"
    RABBITMQ_ADVANCED_CONFIG_FILE="$dir/node/advanced.config"
    # Erlang distribution (node and CLI) on loopback only; RABBITMQ_DIST_PORT alone binds every interface.
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$erl_args"
    RABBITMQ_CTL_ERL_ARGS="$erl_args"
    RABBITMQ_CTL_DIST_PORT_MIN="$6"
    RABBITMQ_CTL_DIST_PORT_MAX="$6"
    ERL_EPMD_ADDRESS=127.0.0.1
    ERL_EPMD_PORT="$7"
  )
}

# Creates the node's part of directory $1: $1 stays ours (the startup output goes there); $1/node is the
# server's, which switches to the rabbitmq user before it writes: that user owns it and may pass through $1.
node_directory() {
  chmod go+x "$1"
  mkdir -p "$1/node/mnesia" "$1/node/log"
  echo '[].' >"$1/node/enabled_plugins" # no plugins: faster start, no management listener on 15672
  $sudo chown -R rabbitmq: "$1/node"
}

# Starts the node whose environment is the array named $1, its output in $2, and sets node_started to the pid
# of what it started. In a session of its own: a Ctrl-C is sent to the whole foreground process group, and su,
# which the Debian wrapper runs as root, would act on it and tear the node down behind our back.
launch_node() {
  local -n env_in=$1
  $sudo setsid --wait env "${env_in[@]}" /usr/sbin/rabbitmq-server >"$2" 2>&1 &
  node_started=$!
}

# Waits up to $4 seconds for node $1 (started as pid $2) to accept AMQP connections on port $3: ready once it
# does (listeners open last, after the guest user exists). On failure says why, with the end of the startup
# output and the node's log in directory $5, and fails.
wait_ready() {
  local node=$1 pid=$2 port=$3 secs=$4 dir=$5 deadline=$((SECONDS + $4)) f
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! alive "$pid" || ((SECONDS >= deadline)); then
      if alive "$pid"; then
        log "$node did not open 127.0.0.1:$port within $secs s"
      else
        log "$node exited while starting"
      fi
      for f in "$dir/startup.log" "$dir"/node/log/*.log; do
        if [ -s "$f" ]; then tail -n 40 "$f" >&2; fi
      done
      return 1
    fi
    sleep 0.2
  done
}

# Prints the pid of the Erlang VM below pid $1.
node_vm() {
  local tree
  mapfile -t tree < <(process_tree "$1")
  vms_among "${tree[@]}" | tail -n 1
}

# Writes to $1 an executable rabbitmqctl bound to node $2, whose environment is the array named $3.
write_ctl() {
  local -n env_in=$3
  printf '#!/usr/bin/env bash\nexec %s env %s /usr/sbin/rabbitmqctl -n %q "$@"\n' \
    "$sudo" "$(printf '%q ' "${env_in[@]}")" "$2" >"$1"
  chmod +x "$1"
}

# Stops node $1, whose environment is the array named $2, started as pid $3 (empty: never started), its VM pid
# $4 (empty when not found): `rabbitmqctl stop`, then signals to whatever is left of its processes. Never
# aborts half-way and is bounded, so a wedged node can't hang the caller's cleanup. Also for a node that was
# stopped already, by a test or by itself: then there is nothing left to signal.
stop_node() {
  local node=$1 pid=$3 beam=$4 tree=() vms=() grace=0 out
  local -n env_in=$2
  [ -n "$pid" ] || return 0
  # Taken before stopping, while the wrappers still link the node's processes to us; with the
  # beam.smp found at start-up, in case its wrappers are gone already.
  mapfile -t tree < <(process_tree "$pid"; [ -z "$beam" ] || process_tree "$beam")
  mapfile -t vms < <(vms_among "${tree[@]}")
  if any_alive "${tree[@]}"; then
    log "stopping $node"
    # Bounded: a wedged node must not hang the test run; the signals below take over.
    if out=$($sudo env "${env_in[@]}" timeout 60 /usr/sbin/rabbitmqctl -n "$node" stop 2>&1); then
      grace=15 # the node is halting: give it time to exit by itself
    else
      log "rabbitmqctl stop failed; signalling the node's processes. It said:"
      tail -n 5 <<<"$out" >&2
    fi
  fi
  # The VM first, so that its wrappers reap it and exit by themselves (signalled all together, the VM
  # could be left a zombie of PID 1); then whatever else of the tree is left.
  if ! wait_gone "$grace" "${tree[@]}"; then
    signal_and_wait TERM 5 "${vms[@]}" || signal_and_wait KILL 5 "${vms[@]}"
    wait_gone 2 "${tree[@]}" || signal_and_wait TERM 5 "${tree[@]}" ||
      signal_and_wait KILL 5 "${tree[@]}" || log "could not end some of: ${tree[*]}"
  fi
  alive "$pid" || wait "$pid" 2>/dev/null # reap it, without blocking on one we couldn't end
  return 0
}
