#!/usr/bin/env bash
# Fetches Delta Lake's jars for local Spark into the local Maven repository (~/.m2/repository),
# once: the versions follow the installed delta-spark and pyspark (src/spark_mlops/delta_jars.py),
# and a session puts the files on the JVM's class path. Run by scripts/bootstrap.sh; with the jars
# present it costs one Python start. Usage: fetch-delta-jars.sh PYTHON
set -uo pipefail
PY="${1:?usage: fetch-delta-jars.sh PYTHON}"
REPO="$HOME/.m2/repository"

die() { echo "bootstrap: $*" >&2; exit 1; }

missing="$("$PY" -m spark_mlops.delta_jars --missing)" || die "could not list Delta Lake's jars (see above)"
[ -z "$missing" ] && exit 0
command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is needed once, to fetch Delta Lake's jars ($(echo $missing)):
  Debian/Ubuntu: sudo apt-get install -y maven
  macOS:         brew install maven
then run this command again."
echo "bootstrap: fetching Delta Lake's jars into $REPO (once): $(echo $missing)" >&2
# The plugin's version is pinned: Maven's own default for the "dependency:" prefix depends on the
# Maven release, and an unreachable repository then hides the cause behind "No plugin found".
GET="org.apache.maven.plugins:maven-dependency-plugin:3.8.1:get"
for coordinate in $missing; do
  if ! out="$(mvn -B -q "$GET" -Dtransitive=false -Dartifact="$coordinate" -Dmaven.repo.local="$REPO" 2>&1)"; then
    # Maven's first error line, without colour codes and help links, condensed to where and why.
    line="$(printf '%s\n' "$out" | sed 's/\x1b\[[0-9;]*m//g' | grep -m1 '^\[ERROR\]' | sed 's/^\[ERROR\] //; s/ -> \[Help.*//')"
    where="$(printf '%s\n' "$line" | grep -oE 'from/to [^ ]+ \([^)]*\)' | head -n1)"
    why="$(printf '%s\n' "$line" | awk -F': ' '{ print (NF >= 2 ? $(NF-1) ": " $NF : $0) }' | cut -c1-200)"
    die "could not fetch $coordinate${where:+ $where}: ${why:-Maven failed}; check the network, or the proxy or mirror in ~/.m2/settings.xml, then run this command again."
  fi
done
