"""Threaded language runtimes: Node.js (V8 worker threads) and Java (HotSpot's GC and
compiler threads) run under km as natively. Both grow and remap memory while other
threads run, so they stand on km's memory model (kontain.mm.space): before it, node
hung at exit and java failed to parse its own class files.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

NODE = shutil.which("node") or shutil.which("nodejs")
JAVA = shutil.which("java")

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (scripts/setup.sh "
                                                     "installs Debian's nodejs)")
needs_java = pytest.mark.skipif(JAVA is None, reason="java is not installed (scripts/setup.sh "
                                                     "installs default-jre-headless)")

HTTP_SERVER = """
const http = require('http');
const server = http.createServer((req, res) => res.end('hello ' + req.url));
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  http.get({host: '127.0.0.1', port, path: '/from-node'}, (res) => {
    let body = '';
    res.on('data', (chunk) => body += chunk);
    res.on('end', () => { console.log(res.statusCode, body); server.close(); });
  });
});
"""

CPU_SCRIPT = """
let count = 0;
for (let n = 2; n < 200000; n++) {
  let prime = true;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) { prime = false; break; }
  if (prime) count++;
}
const big = [];
for (let i = 0; i < 200000; i++) big.push({i, s: 'x' + i});  // make the GC work
console.log('primes below 200000:', count, 'objects:', big.length);
"""

JAVA_SOURCE = """
import java.util.concurrent.*;
public class Hello {
    public static void main(String[] args) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(4);
        long sum = 0;
        Callable<Long> work = () -> {
            long s = 0;
            for (int i = 0; i < 1_000_000; i++) s += i;
            return s;
        };
        for (Future<Long> f : pool.invokeAll(java.util.Collections.nCopies(8, work)))
            sum += f.get();
        pool.shutdown();
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 100_000; i++) text.append(i % 10);
        System.out.println("hello from java, sum " + sum + ", length " + text.length());
    }
}
"""


@needs_node
@pytest.mark.parametrize("script", ["console.log(1)", HTTP_SERVER, CPU_SCRIPT],
                         ids=["print", "http-server", "cpu"])
def test_node(run_both, assert_same, script):
    runs = run_both([NODE, "-e", script], timeout=120)
    assert runs.native.returncode == 0, runs.native.err
    assert_same(runs.native, runs.km)


@needs_java
@pytest.mark.slow
def test_java_source_launcher_and_class_file(run_both, assert_same, tmp_path):
    (tmp_path / "Hello.java").write_text(JAVA_SOURCE)
    runs = run_both([JAVA, "-Xshare:off", "Hello.java"], timeout=300)
    assert "hello from java, sum 3999996000000, length 100000" in runs.native.out
    assert_same(runs.native, runs.km, stderr=False)
    javac = shutil.which("javac")
    if javac is None:  # the JRE alone has no compiler: the source launcher was the test
        return
    subprocess.run([javac, "Hello.java"], cwd=tmp_path, check=True, timeout=300)
    runs = run_both([JAVA, "-Xshare:off", "-cp", str(tmp_path), "Hello"], timeout=300)
    assert_same(runs.native, runs.km, stderr=False)
