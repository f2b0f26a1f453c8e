#!/usr/bin/env bash
# Builds the .deb into a temp dir and checks it: control fields and the conffile
# (dpkg-deb -I), the files and their owners (dpkg-deb -c), that the packaged lnm.conf
# passes the packaged binary's `lnm check`, that the unit's systemd-analyze exposure is
# 2.0 or lower, and, when lintian is installed (CI installs it), that lintian reports no
# error. Run by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

deb=$(packaging/build-deb.sh "$tmp/out")
echo "deb-test: built $(basename "$deb"), $(du -k "$deb" | cut -f1) KiB"
[[ $(basename "$deb") =~ ^lnm_[0-9][0-9A-Za-z.~+]*-1_amd64\.deb$ ]] || fail "file name $(basename "$deb") is not a Debian version"

info=$(dpkg-deb -I "$deb")
for want in "Package: lnm" "Architecture: amd64" "Depends: adduser, init-system-helpers" " conffiles " " postinst " " prerm " " postrm "; do
	grep -qF -- "$want" <<<"$info" || fail "dpkg-deb -I lacks '$want'"
done
[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/lnm/lnm.conf ] || fail "conffiles is not exactly /etc/lnm/lnm.conf"

contents=$(dpkg-deb -c "$deb")
for want in ./usr/bin/lnm ./lib/systemd/system/lnm.service ./etc/lnm/lnm.conf \
	./usr/share/man/man1/lnm.1.gz ./usr/share/bash-completion/completions/lnm \
	./usr/share/zsh/vendor-completions/_lnm ./usr/share/doc/lnm/copyright \
	./usr/share/doc/lnm/changelog.Debian.gz; do
	grep -qE " ${want//./\\.}\$" <<<"$contents" || fail "the package lacks $want"
done
if grep -v ' root/root ' <<<"$contents" | grep -q .; then
	fail "files not owned by root: $(grep -v ' root/root ' <<<"$contents")"
fi
grep -qE '^-rwxr-xr-x .* \./usr/bin/lnm$' <<<"$contents" || fail "/usr/bin/lnm is not 0755"

dpkg-deb -x "$deb" "$tmp/root"
"$tmp/root/usr/bin/lnm" check --config "$tmp/root/etc/lnm/lnm.conf" >/dev/null || fail "lnm check refuses the packaged lnm.conf"
"$tmp/root/usr/bin/lnm" version | head -1 | grep -qE '^lnm [0-9a-f]|^lnm v' || fail "lnm version: $("$tmp/root/usr/bin/lnm" version | head -1)"
zcat "$tmp/root/usr/share/man/man1/lnm.1.gz" | grep -q '^\.TH lnm 1' || fail "the man page has no .TH"

if command -v systemd-analyze >/dev/null; then
	systemd-analyze security --offline=yes --threshold=20 "$tmp/root/lib/systemd/system/lnm.service" >"$tmp/analyze" 2>&1 ||
		{ cat "$tmp/analyze"; fail "systemd-analyze security: exposure above 2.0"; }
	echo "deb-test: $(grep -o 'Overall exposure level.*' "$tmp/analyze")"
elif [ -n "${CI:-}" ]; then
	fail "systemd-analyze is missing"
fi

if command -v lintian >/dev/null; then
	lintian --allow-root "$deb" >"$tmp/lintian" 2>&1 || true
	sed 's/^/deb-test: lintian: /' "$tmp/lintian"
	if grep -q '^E:' "$tmp/lintian"; then fail "lintian reports errors"; fi
elif [ -n "${CI:-}" ]; then
	fail "lintian is not installed; .ci/run installs it"
else
	echo "deb-test: LOUD SKIP: lintian is not installed (apt-get install lintian); CI runs it" >&2
fi
echo "deb-test: ok"
