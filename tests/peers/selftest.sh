#!/usr/bin/env bash
# Self-test of tests/peers/jingle_peer.py: two instances call each other
# through a private Prosody started by natter-testkit.
#
#   tests/peers/selftest.sh            # all cases
#   tests/peers/selftest.sh audio av   # only the named cases
#
# Needs /usr/bin/python3 with python3-aiortc and python3-slixmpp, and an
# already built target/debug/natter-testkit (or NATTER_TESTKIT=path).
# Prints one PASS/FAIL line per case and a final "N passed, N failed" line;
# exits non-zero if any case failed.  Logs stay in $WORK (printed at the end
# on failure, removed on success unless KEEP=1).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
PEER="$HERE/jingle_peer.py"
TESTKIT=${NATTER_TESTKIT:-$ROOT/target/debug/natter-testkit}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jingle-selftest.XXXXXX")
PASSED=0
FAILED=0
SKIPPED=0
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    exec 9>&- 2>/dev/null   # closing the server's stdin stops it
    wait 2>/dev/null
    if [ "$FAILED" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "logs kept in $WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$TESTKIT" ] || { echo "natter-testkit not found at $TESTKIT (build it first)"; exit 2; }
$PY -c 'import aiortc, slixmpp' 2>/dev/null \
    || { echo "need python3-aiortc and python3-slixmpp for $PY"; exit 2; }

# The server lives as long as fd 9 (its stdin) is open, i.e. as long as we do.
mkfifo "$WORK/server.in"
"$TESTKIT" server --users alice:alice,bob:bob <"$WORK/server.in" \
    >"$WORK/server.json" 2>"$WORK/server.err" &
exec 9>"$WORK/server.in"
for _ in $(seq 1 300); do
    [ -s "$WORK/server.json" ] && break
    sleep 0.1
done
[ -s "$WORK/server.json" ] || { echo "server did not start"; cat "$WORK/server.err"; exit 2; }
read -r PORT CA < <($PY -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d["port"], d["ca"])' <"$WORK/server.json")
COMMON=(--host 127.0.0.1 --port "$PORT" --ca "$CA" --duration 45)

# wait_event FILE EVENT TIMEOUT: wait until FILE has a line with "event": "EVENT"
wait_event() {
    local i
    for i in $(seq 1 $(($3 * 10))); do
        grep -q "\"event\": \"$2\"" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# run_case NAME "BOB ARGS" "ALICE ARGS" CHECKS...
#   bob answers, alice calls bob; CHECKS are passed to the checker below.
#   A check "sigterm-alice-after-connected" sends SIGTERM to alice once
#   her call is connected (then not given to the checker).
run_case() {
    local name=$1 bob_args=$2 alice_args=$3
    shift 3
    local checks=() sigterm=0 c
    for c in "$@"; do
        if [ "$c" = sigterm-alice-after-connected ]; then sigterm=1; else checks+=("$c"); fi
    done
    local start=$SECONDS
    local bout="$WORK/$name.bob.out" aout="$WORK/$name.alice.out"
    # shellcheck disable=SC2086
    timeout 60 $PY "$PEER" --jid bob@localhost --password bob "${COMMON[@]}" \
        --resource "r-$name" answer $bob_args -v >"$bout" 2>"$WORK/$name.bob.err" &
    local bpid=$!
    PIDS+=("$bpid")
    if ! wait_event "$bout" online 30; then
        echo "FAIL $name: bob never came online"
        FAILED=$((FAILED + 1))
        kill "$bpid" 2>/dev/null
        return
    fi
    # shellcheck disable=SC2086
    timeout 60 $PY "$PEER" --jid alice@localhost --password alice "${COMMON[@]}" \
        --resource "r-$name" call bob@localhost $alice_args -v >"$aout" 2>"$WORK/$name.alice.err" &
    local apid=$!
    PIDS+=("$apid")
    if [ "$sigterm" = 1 ]; then
        wait_event "$aout" connected 40 && sleep 2.5
        kill -TERM "$apid" 2>/dev/null
    fi
    wait "$apid"
    local arc=$?
    wait "$bpid"
    local brc=$?
    local verdict
    verdict=$($PY - "$aout" "$arc" "$bout" "$brc" "${checks[@]}" <<'EOF'
import json, sys

def load(path):
    events = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                events.append(json.loads(line))
    return events

sides = {"alice": (load(sys.argv[1]), int(sys.argv[2])),
         "bob": (load(sys.argv[3]), int(sys.argv[4]))}
problems = []
for check in sys.argv[5:]:
    side, what, *rest = check.split(":")
    events, rc = sides[side]
    if what == "rc":
        if rc != int(rest[0]):
            problems.append(f"{side} exit code {rc}, wanted {rest[0]}")
    elif what == "ended":
        ended = [e for e in events if e["event"] == "ended"]
        if not ended or ended[-1]["reason"] != rest[0]:
            problems.append(f"{side} ended {ended[-1] if ended else None}, wanted {rest[0]}")
    elif what == "by":
        ended = [e for e in events if e["event"] == "ended"]
        if not ended or ended[-1].get("by") != rest[0]:
            problems.append(f"{side} ended by {ended[-1].get('by') if ended else None}")
    elif what == "freq":
        audio = [e for e in events if e["event"] == "media" and e["kind"] == "audio"]
        want = float(rest[0])
        if not audio:
            problems.append(f"{side} got no audio")
        elif abs(audio[-1]["freq"] - want) > 20 or audio[-1]["rms_db"] < -40:
            problems.append(f"{side} audio {audio[-1]}, wanted {want} Hz")
    elif what == "video":
        w, h = (int(v) for v in rest[0].split("x"))
        video = [e for e in events if e["event"] == "media" and e["kind"] == "video"]
        if not video or video[-1]["frames"] < 10 or (video[-1]["width"], video[-1]["height"]) != (w, h):
            problems.append(f"{side} video {video[-1] if video else None}, wanted >=10 frames {w}x{h}")
    elif what == "event":
        # event:NAME[:key=value...]
        name, conds = rest[0], dict(kv.split("=", 1) for kv in rest[1:])
        if not any(e["event"] == name and all(str(e.get(k)) == v for k, v in conds.items())
                   for e in events):
            problems.append(f"{side} has no {name} event with {conds}")
    elif what == "no-event":
        if any(e["event"] == rest[0] for e in events):
            problems.append(f"{side} has an unexpected {rest[0]} event")
    else:
        problems.append(f"unknown check {check}")
print("; ".join(problems))
EOF
)
    local took=$((SECONDS - start))
    if [ -z "$verdict" ]; then
        echo "PASS $name (${took}s)"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $name (${took}s): $verdict"
        FAILED=$((FAILED + 1))
    fi
}

want() {  # is case $1 selected on the command line (or are all)?
    [ "$#" -eq 1 ] && [ -z "$SELECTED" ] && return 0
    [[ " $SELECTED " == *" $1 "* ]]
}
SELECTED="$*"

# alice 440 Hz calls bob 880 Hz, audio only; alice hangs up after 4 s of media
want audio && run_case audio "--tone 880" "--tone 440 --hangup-after 4" \
    alice:rc:0 bob:rc:0 alice:freq:880 bob:freq:440 \
    alice:ended:success bob:ended:success bob:by:remote \
    alice:event:jmi:type=finish:dir=out bob:event:jmi:type=finish:dir=out

# audio + video
want av && run_case av "--tone 880" "--tone 440 --video --hangup-after 5" \
    alice:rc:0 bob:rc:0 alice:freq:880 bob:freq:440 alice:video:640x480 bob:video:640x480 \
    alice:ended:success bob:ended:success

# both sides trickle candidates in transport-info; the callee hangs up
want trickle && run_case trickle "--tone 880 --trickle 0.3 --hangup-after 3" \
    "--tone 440 --trickle 0.3 --video --video-size 320x240" \
    alice:rc:0 bob:rc:0 alice:freq:880 bob:freq:440 alice:video:640x480 bob:video:320x240 \
    alice:ended:success alice:by:remote bob:by:local \
    alice:event:jingle:action=transport-info:dir=in bob:event:jingle:action=transport-info:dir=in

# callee declines
want reject && run_case reject "--reject" "" \
    alice:rc:0 bob:rc:0 alice:ended:decline bob:ended:decline \
    alice:event:jmi:type=reject:dir=in alice:no-event:jingle

# caller gives up before the callee (ringing for 10 s) answers
want retract && run_case retract "--answer-delay 10" "--retract-after 1" \
    alice:rc:0 bob:rc:0 alice:ended:cancel bob:ended:cancel bob:by:remote \
    bob:event:jmi:type=retract:dir=in bob:no-event:jingle

# SIGTERM during a call hangs up cleanly
want sigterm && run_case sigterm "--tone 880" "--tone 440" sigterm-alice-after-connected \
    alice:rc:0 bob:rc:0 alice:freq:880 alice:ended:success bob:ended:success bob:by:remote

# relay-only through a local coturn, if one is installed
if want turn; then
    if command -v turnserver >/dev/null; then
        TPORT=$($PY -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port="$TPORT" \
            --lt-cred-mech --user=peer:secret --realm=localhost --allow-loopback-peers \
            --no-tls --no-dtls --no-cli --userdb="$WORK/turndb" --pidfile="$WORK/turn.pid" \
            --no-stdout-log --log-file="$WORK/turn.log" 2>"$WORK/turn.err" &
        PIDS+=("$!")
        sleep 1
        TURN="--turn turn:127.0.0.1:$TPORT --turn-user peer --turn-pass secret --relay-only"
        run_case turn "--tone 880 $TURN" "--tone 440 --hangup-after 3 $TURN" \
            alice:rc:0 bob:rc:0 alice:freq:880 bob:freq:440 \
            alice:event:ice:state=selected:local_type=relay:remote_type=relay \
            bob:event:ice:state=selected:local_type=relay:remote_type=relay
    else
        echo "SKIP turn (no turnserver; apt-get install coturn)"
        SKIPPED=$((SKIPPED + 1))
    fi
fi

echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
