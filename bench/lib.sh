# Helpers shared by the bench scripts (sourced, not run).

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# Whether something listens on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_range FIRST END: pick_port hands out free ports from FIRST up to
# END (exclusive), then from FIRST again; each script keeps its own range so
# two scripts running at once do not collide.
port_range() {
  PORT_FIRST=$1
  PORT_END=$2
  NEXT_PORT=$1
}

# Sets PORT_NOW to the next free port of the range.
pick_port() {
  while port_in_use "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
  PORT_NOW=$NEXT_PORT
  NEXT_PORT=$((NEXT_PORT + 1))
  ((NEXT_PORT < PORT_END)) || NEXT_PORT=$PORT_FIRST
}

# wait_listening PID PORT NAME: until process PID listens on PORT (30 s at
# most); exits the script with a line naming NAME if it dies or never does.
wait_listening() {
  local pid=$1 port=$2 name=$3 deadline=$((SECONDS + 30))
  until port_in_use "$port"; do
    kill -0 "$pid" 2>/dev/null || { echo "$name exited before listening" >&2; exit 1; }
    ((SECONDS < deadline)) || { echo "$name did not listen" >&2; exit 1; }
    sleep 0.05
  done
}
