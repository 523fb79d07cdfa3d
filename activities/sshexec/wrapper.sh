# opsflow's exactly-once wrapper (see ExecWrapper in wrapper.go), fed on stdin
# to /bin/sh -s. @NAME@ placeholders are filled in by ExecWrapper.
umask 077
@STATEDIR@
K="$B/@KEY@"
@SAFEDIR@
set -C
if echo $$ 2>/dev/null > "$K.lock"; then
set +C
trap '' HUP PIPE
(@EXPORTS@exec @INTERPRETER@ /dev/fd/3) 3<<'@DELIM@' < /dev/null > "$K.out" 2>&1
@SCRIPT@@DELIM@
echo $? >> "$K.lock"
else
set +C
# A newline each second: once the caller is gone (its worker died), the
# write fails and this waiter exits instead of lingering.
i=0
# (An execution begun by an older opsflow keeps its status in $K.rc.)
until { read p; read rc; } < "$K.lock" && [ -n "$rc" ] || { [ -s "$K.rc" ] && read rc < "$K.rc"; }; do i=$((i+1)); [ $((i % 5)) -eq 0 ] && echo; sleep 0.2; done
fi
[ -n "$rc" ] || { read p; read rc; } < "$K.lock"
printf '\n%s %s\n' "$M" "$rc"
tail -c @TAIL@ "$K.out"
@SWEEP@
