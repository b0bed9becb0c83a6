"""The static anywidget runtime that exported HTML pages carry inline.

An exported page has no kernel and no widget manager. ``SHIM_JS`` is a small classic script
(emitted once per page) that defines ``window.__wbStatic``: it reads the saved widget state from
the page's ``<script type="application/vnd.jupyter.widget-state+json">`` (the notebook's
``metadata.widgets``), builds one model object per anywidget model (``get``, ``set``, ``on``,
``off``, ``save_changes`` and ``send`` as no-ops, a minimal ``widget_manager``), decodes the
saved binary buffers into ``DataView``\\ s at their paths, imports the model's ``_esm`` source from
a Blob URL and calls its ``initialize`` (once per model) and ``render({model, el})`` (once per
view), the three module forms anywidget accepts (``export default {render}``,
``export default () => ({render})``, a bare ``export function render``) included.
``set`` fires ``change:<name>`` / ``change`` locally, so widgets that observe their own traits
(and linked views of one model) still react to clicks; nothing reaches Python.

Each widget view is a ``<div data-wb-model-id=...>`` followed by an inline
``<script type="module">`` calling ``__wbStatic.mount(el, modelId)``; on success the div gets
``data-wb-static="1"``, on failure ``data-wb-static="error"`` and a visible message.
"""

from __future__ import annotations

SHIM_JS = r"""
(function () {
  "use strict";
  if (window.__wbStatic) return;
  var STATE_MIME = "application/vnd.jupyter.widget-state+json";
  var savedState = null;
  var models = new Map();
  var widgets = new Map();

  function loadState() {
    if (savedState) return savedState;
    savedState = {};
    var scripts = document.querySelectorAll('script[type="' + STATE_MIME + '"]');
    for (var i = 0; i < scripts.length; i++) {
      try {
        var parsed = JSON.parse(scripts[i].textContent);
        Object.assign(savedState, (parsed && parsed.state) || {});
      } catch (err) {
        console.error("[wb-static] unreadable widget state", err);
      }
    }
    return savedState;
  }

  function decodeBase64(text) {
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(text);
    var bin = atob(text);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }

  function decodeHex(text) {
    var bytes = new Uint8Array(text.length >> 1);
    for (var i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.substr(2 * i, 2), 16);
    return bytes;
  }

  function decodeBuffer(b) {
    var bytes = b.encoding === "hex" ? decodeHex(b.data) : decodeBase64(b.data);
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  function putBuffers(state, buffers) {
    (buffers || []).forEach(function (b) {
      var path = b.path || [];
      if (!path.length) return;
      var obj = state;
      for (var i = 0; i < path.length - 1; i++) {
        if (obj[path[i]] == null) obj[path[i]] = typeof path[i + 1] === "number" ? [] : {};
        obj = obj[path[i]];
      }
      obj[path[path.length - 1]] = decodeBuffer(b);
    });
  }

  function makeModel(modelId, entry) {
    var state = Object.assign({}, entry.state || {});
    putBuffers(state, entry.buffers);
    var listeners = [];
    function emit(event, args) {
      listeners.slice().forEach(function (l) {
        if (l.event !== event) return;
        try {
          l.callback.apply(l.context || model, args);
        } catch (err) {
          console.error("[wb-static] listener for " + event + " failed", err);
        }
      });
    }
    var model = {
      model_id: modelId,
      get: function (name) { return state[name]; },
      set: function (name, value) {
        if (name !== null && typeof name === "object") {
          Object.keys(name).forEach(function (k) { model.set(k, name[k]); });
          return;
        }
        var old = state[name];
        state[name] = value;
        if (old !== value) {
          emit("change:" + name, [model, value]);
          emit("change", [model]);
        }
      },
      on: function (events, callback, context) {
        String(events).split(/\s+/).forEach(function (event) {
          if (event) listeners.push({ event: event, callback: callback, context: context });
        });
      },
      off: function (events, callback, context) {
        var names = events ? String(events).split(/\s+/) : null;
        listeners = listeners.filter(function (l) {
          return !(
            (names === null || names.indexOf(l.event) >= 0) &&
            (callback == null || l.callback === callback) &&
            (context == null || l.context === context)
          );
        });
      },
      once: function (event, callback, context) {
        var wrapped = function () {
          model.off(event, wrapped);
          callback.apply(this, arguments);
        };
        model.on(event, wrapped, context);
      },
      save_changes: function () {},
      send: function () {},
      widget_manager: {
        get_model: function (id) { return Promise.resolve(getModel(id)); }
      }
    };
    return model;
  }

  function getModel(modelId) {
    if (models.has(modelId)) return models.get(modelId);
    var entry = loadState()[modelId];
    if (!entry) throw new Error("[wb-static] no saved state for model " + modelId);
    var model = makeModel(modelId, entry);
    models.set(modelId, model);
    return model;
  }

  async function importSource(source) {
    var url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    try {
      return await import(url);
    } catch (err) {
      // an opaque (file://) origin may refuse blob: modules; a data: URL always works
      var bytes = new TextEncoder().encode(source);
      var bin = "";
      for (var i = 0; i < bytes.length; i += 0x8000) {
        bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      }
      return await import("data:text/javascript;base64," + btoa(bin));
    } finally {
      URL.revokeObjectURL(url);
    }
  }

  async function loadWidget(model) {
    var mod = await importSource(model.get("_esm") || "");
    var def;
    if (typeof mod.render === "function") {
      def = { render: mod.render, initialize: mod.initialize };
    } else if (mod.default) {
      def = typeof mod.default === "function" ? await mod.default() : mod.default;
    } else {
      throw new Error("[wb-static] module must export a default function or object");
    }
    var noKernel = function () {
      return Promise.reject(new Error("[wb-static] no kernel in a static export"));
    };
    if (def && typeof def.initialize === "function") {
      await def.initialize({
        model: model,
        signal: new AbortController().signal,
        experimental: { invoke: noKernel }
      });
    }
    return { def: def, experimental: { invoke: noKernel } };
  }

  function getWidget(model) {
    if (!widgets.has(model)) widgets.set(model, loadWidget(model));
    return widgets.get(model);
  }

  async function mount(el, modelId) {
    try {
      var model = getModel(modelId);
      var widget = await getWidget(model);
      if (widget.def && typeof widget.def.render === "function") {
        await widget.def.render({
          model: model,
          el: el,
          signal: new AbortController().signal,
          experimental: widget.experimental
        });
      }
      el.setAttribute("data-wb-static", "1");
    } catch (err) {
      console.error("[wb-static] could not render widget " + modelId, err);
      el.setAttribute("data-wb-static", "error");
      var pre = document.createElement("pre");
      pre.className = "wb-static-error";
      pre.textContent = "Widget could not be rendered: " + (err && err.message ? err.message : err);
      el.appendChild(pre);
    }
  }

  window.__wbStatic = { mount: mount, getModel: getModel };
})();
"""
