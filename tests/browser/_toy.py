"""A toy anywidget for the browser tests: the real-browser layer is tested without the real widgets.

``TOY_SOURCE`` is Python source (run in-process by the export tests, pasted into notebook cells
by the JupyterLab/nbconvert tests) defining ``Toy``: float32 ``points`` (a ``Bytes`` trait, sent
as a binary buffer), a ``label``, a ``selection`` that a click on the canvas sets to ``[0]``, and
an ``_esm`` that draws the points with WebGL and mirrors its state into DOM attributes
(``data-testid="wb-toy"``, ``data-rendered``, ``data-n``, ``data-label``, ``data-first``,
``data-selection``). ``module_form`` picks which of anywidget's module forms the ``_esm`` uses.
"""

from __future__ import annotations

from typing import Any

TOY_SOURCE = r'''
import anywidget
import numpy as np
import traitlets

_TOY_BODY = """
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "wb-toy";
  root.setAttribute("data-testid", "wb-toy");
  const canvas = document.createElement("canvas");
  canvas.width = 300; canvas.height = 200;
  canvas.style.width = "300px"; canvas.style.height = "200px";
  root.appendChild(canvas);
  el.appendChild(root);
  const raw = model.get("points");
  const view = ArrayBuffer.isView(raw);  // DataView or typed array; else an ArrayBuffer
  const bytes = view ? raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) : raw;
  const pts = new Float32Array(bytes);
  const gl = canvas.getContext("webgl", { preserveDrawingBuffer: true });
  root.setAttribute("data-webgl", gl ? "1" : "0");
  if (gl) {
    const vs = gl.createShader(gl.VERTEX_SHADER);
    gl.shaderSource(vs, "attribute vec2 p; void main(){ "
      + "gl_Position = vec4(p, 0.0, 1.0); gl_PointSize = 6.0; }");
    gl.compileShader(vs);
    const fs = gl.createShader(gl.FRAGMENT_SHADER);
    gl.shaderSource(fs, "precision mediump float; void main(){ "
      + "gl_FragColor = vec4(0.1, 0.3, 0.9, 1.0); }");
    gl.compileShader(fs);
    const prog = gl.createProgram();
    gl.attachShader(prog, vs); gl.attachShader(prog, fs); gl.linkProgram(prog); gl.useProgram(prog);
    const buf = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.bufferData(gl.ARRAY_BUFFER, pts, gl.STATIC_DRAW);
    const loc = gl.getAttribLocation(prog, "p");
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
    gl.clearColor(1, 1, 1, 1); gl.clear(gl.COLOR_BUFFER_BIT);
    gl.drawArrays(gl.POINTS, 0, pts.length / 2);
  }
  const sync = () => root.setAttribute("data-selection", JSON.stringify(model.get("selection")));
  model.on("change:selection", sync);
  sync();
  canvas.addEventListener("click", () => { model.set("selection", [0]); model.save_changes(); });
  root.setAttribute("data-n", String(pts.length / 2));
  root.setAttribute("data-label", model.get("label"));
  root.setAttribute("data-first", String(pts[0]));
  root.setAttribute("data-rendered", "1");
}
"""

_TOY_FORMS = {
    "object": _TOY_BODY + "export default { render };",
    "factory": _TOY_BODY + "export default () => ({ render });",
    "named": _TOY_BODY.replace("function render", "export function render"),
}


class Toy(anywidget.AnyWidget):
    _esm = traitlets.Unicode(_TOY_FORMS["object"]).tag(sync=True)
    _css = traitlets.Unicode(".wb-toy { border: 1px solid #4a7; }").tag(sync=True)
    points = traitlets.Bytes(b"").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    selection = traitlets.List(traitlets.Int()).tag(sync=True)

    def __init__(self, n=1000, label="toy", module_form="object", seed=0, **kw):
        rng = np.random.default_rng(seed)
        pts = rng.uniform(-0.9, 0.9, size=(n, 2)).astype("<f4")
        pts[0] = (0.25, -0.5)
        super().__init__(points=pts.tobytes(), label=label, **kw)
        self._esm = _TOY_FORMS[module_form]
'''


def toy_namespace() -> dict[str, Any]:
    """Run ``TOY_SOURCE`` in a fresh namespace and return it (``Toy`` among its names)."""
    namespace: dict[str, Any] = {}
    exec(compile(TOY_SOURCE, "<toy widget>", "exec"), namespace)
    return namespace
