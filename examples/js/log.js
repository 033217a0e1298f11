// Console output is captured in the Execution's "log", one entry per call, in order.
console.log("starting", { at: "log.js" });
console.info("info is captured too");
console.warn("so is warn");
console.error("and error");
console.debug("and debug");
const items = [3, 1, 2].sort();
console.log("sorted", items);
items.length;
