#!/usr/bin/env bash
# Development machines only (CI stays on SwiftShader): puts Mesa's newest lavapipe, a CPU Vulkan driver
# that offers subgroup matrices (8×8×8, f16 → f32) and shader-f16, next to a Debian 12 system without
# touching it, so the subgroup-matrix kernels run and are tested without a GPU. Mesa 26 is in Debian sid
# only, and sid's libraries need sid's glibc: the packages are unpacked under $DIR, and a copy of `node`
# gets sid's loader as its interpreter and sid's libraries as its rpath (the driver and LLVM get the
# same rpath, which their own dependencies need). Nothing outside $DIR changes; apt's state for sid lives
# in $DIR too. Needs Debian or Ubuntu, root, patchelf (installed if missing) and deb.debian.org.
#   bash .ci/lavapipe.sh [DIR]            (default /opt/lavapipe), then:
#   . DIR/env.sh && npx vitest run test/kernels/attention-mma.test.ts
set -euo pipefail
dir="${1:-/opt/lavapipe}"
mkdir -p "$dir/apt/lists/partial" "$dir/apt/archives/partial" "$dir/debs" "$dir/root" "$dir/bin"
command -v patchelf >/dev/null || apt-get install -y -qq --no-install-recommends patchelf >/dev/null

echo 'deb http://deb.debian.org/debian sid main' > "$dir/apt/sources.list"
apt_sid=(-o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt" -o "Dir::State::status=/dev/null"
  -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get "${apt_sid[@]}" update -qq
# The driver and everything it needs, down to glibc (status=/dev/null: nothing counts as installed).
pkgs=$(apt-cache "${apt_sid[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances mesa-vulkan-drivers 2>/dev/null | grep -v '^ ' | grep -v '<' | sort -u)
(cd "$dir/debs" && apt-get "${apt_sid[@]}" download $pkgs >/dev/null)
for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done

lib="$dir/root/usr/lib/x86_64-linux-gnu"
cp "$(readlink -f "$(command -v node)")" "$dir/bin/node"
patchelf --set-interpreter "$lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$lib:/usr/lib/x86_64-linux-gnu" "$dir/bin/node"
for so in "$lib"/libvulkan_lvp.so "$lib"/libLLVM.so.*; do
  [ -L "$so" ] || patchelf --force-rpath --set-rpath "$lib" "$so"
done
sed "s#\"libvulkan_lvp.so\"#\"$lib/libvulkan_lvp.so\"#" "$dir/root/usr/share/vulkan/icd.d/lvp_icd.json" > "$dir/lvp_icd.json"
cat > "$dir/env.sh" <<EOF
# Source to run node (and npx, vitest) on sid's glibc with lavapipe as the only Vulkan driver.
export PATH="$dir/bin:\$PATH"
export VK_ICD_FILENAMES="$dir/lvp_icd.json"
EOF
# shellcheck disable=SC1091
. "$dir/env.sh"
node -e "
const { create, globals } = require('$(pwd)/node_modules/webgpu');
Object.assign(globalThis, globals);
create(['enable-dawn-features=allow_unsafe_apis']).requestAdapter().then((a) => {
  const i = a.info;
  const configs = [...(i.subgroupMatrixConfigs ?? [])].map((c) => c.componentType + '→' + c.resultComponentType + ' ' + c.M + '×' + c.N + '×' + c.K);
  console.log('lavapipe: ' + i.description + '; subgroup matrices: ' + (configs.join(', ') || 'none'));
  process.exit(0);
});" 2>/dev/null
echo "lavapipe: ready; run '. $dir/env.sh' first"
