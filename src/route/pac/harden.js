// Run after the helpers and before the PAC script (PAC-7): no code generation from strings, nothing of
// the host. QuickJS has no require/process/Java/ActiveXObject/WebAssembly; the deletes below document
// and enforce it should a future build add any of them.
(function () {
  "use strict";
  var G = globalThis;
  function refuse() { throw new EvalError("code generation from strings is disabled in PAC scripts"); }
  var kinds = [
    function () {},
    function* () {},
  ];
  try { kinds.push(eval("(async function () {})")); } catch (e) { }
  try { kinds.push(eval("(async function* () {})")); } catch (e) { }
  for (var i = 0; i < kinds.length; i++) {
    var proto = Object.getPrototypeOf(kinds[i]);
    Object.defineProperty(proto, "constructor", { value: refuse, writable: false, configurable: false });
  }
  var names = ["eval", "Function", "require", "process", "Java", "ActiveXObject", "WebAssembly",
               "Packages", "java", "std", "os", "print", "console"];
  for (var j = 0; j < names.length; j++) {
    try { delete G[names[j]]; } catch (e) { }
    if (names[j] in G) Object.defineProperty(G, names[j], { value: undefined, writable: false, configurable: false });
  }
})();
