// Lumen Lamps cart: kept in localStorage so it survives navigation and reloads.
(function () {
  "use strict";
  const KEY = "lumen-cart";

  function read() {
    try {
      const items = JSON.parse(localStorage.getItem(KEY) || "[]");
      return Array.isArray(items) ? items : [];
    } catch (err) {
      return [];
    }
  }

  function write(items) {
    localStorage.setItem(KEY, JSON.stringify(items));
    refreshBadges();
  }

  function count() {
    return read().reduce((n, item) => n + item.qty, 0);
  }

  function total() {
    return read().reduce((sum, item) => sum + item.price * item.qty, 0);
  }

  function add(product) {
    const items = read();
    const existing = items.find((item) => item.id === product.id);
    if (existing) {
      existing.qty += 1;
    } else {
      items.push({ id: product.id, name: product.name, price: product.price, qty: 1 });
    }
    write(items);
  }

  function remove(id) {
    write(read().filter((item) => item.id !== id));
  }

  function clear() {
    write([]);
  }

  function money(value) {
    return "$" + value.toFixed(2);
  }

  function refreshBadges() {
    const n = count();
    document.querySelectorAll("[data-cart-count]").forEach((el) => {
      el.textContent = n > 0 ? String(n) : "";
    });
  }

  window.LumenCart = { read, add, remove, clear, count, total, money, refreshBadges };
  window.addEventListener("storage", (event) => {
    if (event.key === KEY) refreshBadges();
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", refreshBadges);
  } else {
    refreshBadges();
  }
})();
