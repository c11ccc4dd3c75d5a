// oa dashboard: one page over oa's three layers.
// - REST /api/v1 (books, funds, order ticket, symbol search),
// - Socket.IO order events (with replay after a reconnect: the last `seq` is kept),
// - the WebSocket market-data proxy (LTP/quote ticks for the watchlist and the chart),
// - /health for the system panel.
// Every URL is relative to the page, so the page also works behind a reverse proxy under a
// path prefix. The API key lives in this tab's sessionStorage only.
'use strict';

(() => {
  const base = new URL('.', document.baseURI);
  const storage = window.sessionStorage;
  const STORAGE_KEY = 'oa.apikey';
  const STORAGE_SEQ = 'oa.lastSeq';
  const STORAGE_WATCH = 'oa.watchlist';
  const MAX_EVENT_ROWS = 200;
  const BOOK_EVENTS = new Set([
    'order_event', 'modify_order_event', 'cancel_order_event', 'close_position_event',
    'order_update', 'analyzer_update', 'replay_gap',
  ]);

  const $ = (selector) => document.querySelector(selector);
  const state = {
    key: null,
    config: null,
    socket: null,
    market: null,
    marketRetry: 0,
    marketTimer: null,
    systemTimer: null,
    refreshTimer: null,
    seenEvents: new Set(),
    watch: [],
    quotes: new Map(),
    selected: null,
    chart: null,
    series: null,
    chartTime: 0,
  };

  // ---- small helpers ----------------------------------------------------------------

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function row(cells) {
    const tr = document.createElement('tr');
    for (const cell of cells) {
      const td = document.createElement('td');
      if (cell instanceof Node) td.append(cell); else td.textContent = cell ?? '';
      tr.append(td);
    }
    return tr;
  }

  function clockTime(date = new Date()) {
    return date.toLocaleTimeString([], { hour12: false });
  }

  function messageOf(body) {
    if (!body) return 'no response';
    if (typeof body.message === 'string') return body.message;
    if (body.message !== undefined) return JSON.stringify(body.message);
    return JSON.stringify(body);
  }

  function symbolKey(exchange, symbol) {
    return `${exchange}:${symbol}`;
  }

  // ---- REST --------------------------------------------------------------------------

  async function api(endpoint, body = {}) {
    let response;
    try {
      response = await fetch(new URL(`api/v1/${endpoint}`, base), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ apikey: state.key, ...body }),
      });
    } catch (error) {
      return { ok: false, status: 0, body: { status: 'error', message: `server unreachable (${error.message})` } };
    }
    let json;
    try {
      json = await response.json();
    } catch {
      json = { status: 'error', message: `HTTP ${response.status}` };
    }
    return { ok: response.ok && json.status === 'success', status: response.status, body: json };
  }

  // ---- sign-in -----------------------------------------------------------------------

  async function signIn(key, quiet) {
    state.key = key;
    const check = await api('funds');
    if (!check.ok) {
      state.key = null;
      const reason = check.status === 403 ? `The server refused this API key: ${messageOf(check.body)}` : messageOf(check.body);
      showSignIn(quiet ? `Your stored key no longer works. ${reason}` : reason);
      return;
    }
    storage.setItem(STORAGE_KEY, key);
    $('#signin').hidden = true;
    $('#dashboard').hidden = false;
    $('#session-actions').hidden = false;
    $('#account-mode').hidden = false;
    renderFunds(check.body.data);
    await loadConfig();
    connectEvents();
    connectMarket();
    refreshBooks();
    refreshAnalyzer();
    pollSystem();
    restoreWatchlist();
  }

  function showSignIn(message) {
    $('#signin').hidden = false;
    $('#dashboard').hidden = true;
    $('#session-actions').hidden = true;
    $('#account-mode').hidden = true;
    $('#signin-error').textContent = message || '';
    $('#apikey').value = '';
    $('#apikey').focus();
  }

  function signOut(message) {
    storage.removeItem(STORAGE_KEY);
    storage.removeItem(STORAGE_SEQ);
    state.key = null;
    if (state.socket) { state.socket.disconnect(); state.socket = null; }
    if (state.market) { state.market.onclose = null; state.market.close(); state.market = null; }
    clearTimeout(state.marketTimer);
    clearInterval(state.systemTimer);
    setBadge('#events-state', 'idle', 'events: signed out');
    setBadge('#market-state', 'idle', 'market data: signed out');
    $('#event-rows').replaceChildren();
    state.seenEvents.clear();
    showSignIn(message);
  }

  async function loadConfig() {
    try {
      const response = await fetch(new URL('dashboard/config.json', base));
      state.config = await response.json();
    } catch {
      state.config = {};
    }
  }

  function setBadge(selector, stateName, text) {
    const badge = $(selector);
    badge.dataset.state = stateName;
    badge.textContent = text;
  }

  // ---- order events (Socket.IO) ------------------------------------------------------

  function connectEvents() {
    setBadge('#events-state', 'connecting', 'events: connecting');
    const socket = window.io(base.origin, {
      path: `${base.pathname}socket.io`,
      // Evaluated on every (re)connection: the server replays what came after `offset`.
      auth: (send) => {
        const offset = storage.getItem(STORAGE_SEQ);
        send(offset ? { apikey: state.key, offset } : { apikey: state.key });
      },
      reconnectionDelay: 500,
      reconnectionDelayMax: 3000,
    });
    state.socket = socket;
    socket.on('connect', () => setBadge('#events-state', 'connected', 'events: connected'));
    socket.on('disconnect', (reason) => setBadge('#events-state', 'disconnected', `events: disconnected (${reason})`));
    socket.on('connect_error', (error) => {
      if (/apikey/i.test(error.message)) {
        signOut(`The server refused the API key: ${error.message}`);
        return;
      }
      setBadge('#events-state', 'disconnected', `events: disconnected (${error.message})`);
    });
    socket.io.on('reconnect_attempt', (attempt) => setBadge('#events-state', 'reconnecting', `events: reconnecting (attempt ${attempt})`));
    socket.onAny(onEvent);
  }

  function onEvent(name, data) {
    data = data || {};
    if (data.event_id) {
      if (state.seenEvents.has(data.event_id)) return;
      state.seenEvents.add(data.event_id);
      if (state.seenEvents.size > 5000) state.seenEvents.clear();
    }
    if (typeof data.seq === 'number') {
      const last = Number(storage.getItem(STORAGE_SEQ) || 0);
      if (data.seq > last) storage.setItem(STORAGE_SEQ, String(data.seq));
    }
    if (name === 'password_change') {
      signOut('Your API key was changed or revoked: sign in with the new key.');
      return;
    }
    const request = data.request || {};
    const response = data.response || {};
    const tr = row([
      clockTime(),
      name,
      data.symbol ?? request.symbol ?? '',
      data.action ?? request.action ?? '',
      data.order_status ?? data.status ?? response.status ?? (name === 'replay_gap' ? data.reason : ''),
      data.orderid ?? response.orderid ?? '',
    ]);
    tr.className = 'fresh';
    tr.dataset.event = name;
    if (data.orderid ?? response.orderid) tr.dataset.orderid = data.orderid ?? response.orderid;
    if (name === 'replay_gap') tr.title = data.message || '';
    const body = $('#event-rows');
    body.prepend(tr);
    while (body.children.length > MAX_EVENT_ROWS) body.lastElementChild.remove();
    if (BOOK_EVENTS.has(name)) scheduleRefresh();
  }

  // ---- books and funds (REST, refreshed on events) ----------------------------------

  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(refreshBooks, 150);
  }

  async function refreshBooks() {
    const [positions, orders, funds] = await Promise.all([api('positionbook'), api('orderbook'), api('funds')]);
    if (positions.ok) renderPositions(positions.body.data || []);
    if (orders.ok) renderOrders(orders.body.data || {});
    if (funds.ok) renderFunds(funds.body.data);
  }

  function renderPositions(positions) {
    const rows = positions.map((position) => {
      const pnl = Number(position.pnl || 0);
      const tr = row([
        `${position.symbol} ${position.exchange}`,
        position.product,
        position.quantity,
        position.average_price,
        position.ltp,
        pnl.toFixed(2),
      ]);
      tr.dataset.symbol = position.symbol;
      tr.dataset.quantity = position.quantity;
      tr.lastElementChild.className = pnl > 0 ? 'up' : pnl < 0 ? 'down' : '';
      return tr;
    });
    $('#position-rows').replaceChildren(...rows);
  }

  function renderOrders(book) {
    const stats = book.statistics || {};
    $('#order-stats').textContent =
      `buy ${stats.total_buy_orders ?? 0} · sell ${stats.total_sell_orders ?? 0} · ` +
      `completed ${stats.total_completed_orders ?? 0} · open ${stats.total_open_orders ?? 0} · ` +
      `rejected ${stats.total_rejected_orders ?? 0}`;
    const rows = (book.orders || []).map((order) => {
      const actions = document.createElement('span');
      if (order.order_status === 'open' || order.order_status === 'trigger pending') {
        const modify = element('button', 'Modify', 'secondary');
        modify.type = 'button';
        modify.setAttribute('aria-label', `Modify order ${order.orderid}`);
        modify.addEventListener('click', () => editOrder(order));
        const cancel = element('button', 'Cancel', 'secondary');
        cancel.type = 'button';
        cancel.setAttribute('aria-label', `Cancel order ${order.orderid}`);
        cancel.addEventListener('click', () => cancelOrder(order.orderid));
        actions.append(modify, ' ', cancel);
      }
      const tr = row([
        order.timestamp,
        `${order.symbol} ${order.exchange}`,
        order.action,
        order.quantity,
        order.pricetype,
        order.average_price || order.price,
        order.order_status,
        actions,
      ]);
      tr.dataset.orderid = order.orderid;
      tr.dataset.status = order.order_status;
      return tr;
    });
    $('#order-rows').replaceChildren(...rows);
  }

  function renderFunds(funds) {
    if (!funds) return;
    const labels = {
      availablecash: 'Available cash', collateral: 'Collateral', m2mrealized: 'Realised M2M',
      m2munrealized: 'Unrealised M2M', utiliseddebits: 'Utilised',
    };
    const list = $('#funds');
    list.replaceChildren();
    for (const [key, label] of Object.entries(labels)) {
      const value = element('dd', funds[key] ?? '');
      value.dataset.field = key;
      list.append(element('dt', label), value);
    }
  }

  // ---- analyzer mode -----------------------------------------------------------------

  async function refreshAnalyzer() {
    const status = await api('analyzer');
    if (status.ok) showMode(Boolean(status.body.data && status.body.data.analyze_mode));
  }

  function showMode(analyze) {
    $('#analyzer-toggle').checked = analyze;
    const badge = $('#account-mode');
    badge.textContent = analyze ? 'analyzer mode (virtual funds)' : 'live';
    badge.classList.toggle('analyze', analyze);
  }

  async function toggleAnalyzer(event) {
    const wanted = event.target.checked;
    const result = await api('analyzer/toggle', { mode: wanted });
    if (!result.ok) {
      event.target.checked = !wanted;
      showTicketResult(false, messageOf(result.body));
      return;
    }
    showMode(Boolean(result.body.data && result.body.data.analyze_mode));
    refreshBooks();
  }

  // ---- order ticket ------------------------------------------------------------------

  function ticketValues() {
    return {
      strategy: 'dashboard',
      symbol: $('#ticket-symbol').value.trim().toUpperCase(),
      exchange: $('#ticket-exchange').value,
      action: document.querySelector('input[name="ticket-action"]:checked').value,
      quantity: $('#ticket-quantity').value,
      pricetype: $('#ticket-pricetype').value,
      product: $('#ticket-product').value,
      price: $('#ticket-price').value || '0',
      trigger_price: $('#ticket-trigger').value || '0',
    };
  }

  function showTicketResult(ok, text) {
    const result = $('#ticket-result');
    result.className = `result ${ok ? 'ok' : 'error'}`;
    result.textContent = text;
  }

  async function submitTicket(event) {
    event.preventDefault();
    const values = ticketValues();
    const orderid = $('#ticket-orderid').value;
    const result = orderid
      ? await api('modifyorder', { ...values, orderid, disclosed_quantity: '0' })
      : await api('placeorder', values);
    if (result.ok) {
      const id = result.body.orderid ? ` (order ${result.body.orderid})` : '';
      showTicketResult(true, `${orderid ? 'Modified' : 'Placed'}${id}${result.body.mode === 'analyze' ? ' in analyzer mode' : ''}`);
      if (orderid) resetTicket();
    } else {
      showTicketResult(false, `${result.status ? `HTTP ${result.status}: ` : ''}${messageOf(result.body)}`);
    }
    scheduleRefresh();
  }

  function editOrder(order) {
    $('#ticket-orderid').value = order.orderid;
    $('#ticket-symbol').value = order.symbol;
    $('#ticket-exchange').value = order.exchange;
    document.querySelector(`input[name="ticket-action"][value="${order.action}"]`).checked = true;
    $('#ticket-quantity').value = order.quantity;
    $('#ticket-pricetype').value = order.pricetype;
    $('#ticket-product').value = order.product;
    $('#ticket-price').value = order.price;
    $('#ticket-trigger').value = order.trigger_price;
    $('#ticket-submit').textContent = `Modify order ${order.orderid}`;
    $('#ticket-reset').hidden = false;
    $('#ticket-quantity').focus();
  }

  function resetTicket() {
    $('#ticket-orderid').value = '';
    $('#ticket-submit').textContent = 'Place order';
    $('#ticket-reset').hidden = true;
  }

  async function cancelOrder(orderid) {
    const result = await api('cancelorder', { strategy: 'dashboard', orderid });
    showTicketResult(result.ok, result.ok ? `Cancelled order ${orderid}` : messageOf(result.body));
    scheduleRefresh();
  }

  // ---- market watch (symbol search, WebSocket ticks, chart) -------------------------

  async function search(event) {
    event.preventDefault();
    const query = $('#search-query').value.trim();
    const list = $('#search-results');
    if (!query) { list.replaceChildren(); return; }
    const result = await api('search', { query });
    if (!result.ok) {
      list.replaceChildren(element('li', messageOf(result.body), 'error'));
      return;
    }
    const items = (result.body.data || []).slice(0, 20).map((match) => {
      const item = element('li');
      item.append(element('span', `${match.symbol} · ${match.exchange} · ${match.name}`));
      const add = element('button', 'Watch', 'secondary');
      add.type = 'button';
      add.setAttribute('aria-label', `Watch ${match.symbol} on ${match.exchange}`);
      add.addEventListener('click', () => watch(match.exchange, match.symbol));
      item.append(add);
      return item;
    });
    list.replaceChildren(...(items.length ? items : [element('li', result.body.message, 'muted')]));
  }

  function restoreWatchlist() {
    let saved = [];
    try { saved = JSON.parse(storage.getItem(STORAGE_WATCH) || '[]'); } catch { saved = []; }
    state.watch = [];
    for (const entry of saved) watch(entry.exchange, entry.symbol);
  }

  function watch(exchange, symbol) {
    if (!state.watch.some((entry) => entry.exchange === exchange && entry.symbol === symbol)) {
      state.watch.push({ exchange, symbol });
      storage.setItem(STORAGE_WATCH, JSON.stringify(state.watch));
      subscribe([{ exchange, symbol }]);
    }
    renderWatchlist();
    select(exchange, symbol);
  }

  function unwatch(exchange, symbol) {
    state.watch = state.watch.filter((entry) => !(entry.exchange === exchange && entry.symbol === symbol));
    storage.setItem(STORAGE_WATCH, JSON.stringify(state.watch));
    send({ action: 'unsubscribe', symbols: [{ exchange, symbol, mode: 1 }, { exchange, symbol, mode: 2 }] });
    if (state.selected === symbolKey(exchange, symbol)) state.selected = null;
    renderWatchlist();
  }

  function renderWatchlist() {
    const rows = state.watch.map(({ exchange, symbol }) => {
      const key = symbolKey(exchange, symbol);
      const quote = state.quotes.get(key) || {};
      const pick = element('button', symbol, 'secondary');
      pick.type = 'button';
      pick.title = `Chart ${symbol} (${exchange})`;
      pick.addEventListener('click', () => select(exchange, symbol));
      const remove = element('button', '×', 'secondary');
      remove.type = 'button';
      remove.setAttribute('aria-label', `Stop watching ${symbol} on ${exchange}`);
      remove.addEventListener('click', () => unwatch(exchange, symbol));
      const change = quote.change === undefined ? '' : `${quote.change.toFixed(2)} (${quote.changePercent.toFixed(2)}%)`;
      const tr = row([pick, quote.ltp ?? '', change, remove]);
      tr.dataset.symbol = key;
      tr.children[1].dataset.field = 'ltp';
      tr.children[2].className = quote.change > 0 ? 'up' : quote.change < 0 ? 'down' : '';
      if (state.selected === key) tr.classList.add('selected');
      return tr;
    });
    $('#watch-rows').replaceChildren(...rows);
  }

  function select(exchange, symbol) {
    const key = symbolKey(exchange, symbol);
    state.selected = key;
    $('#chart-title').textContent = `${symbol} (${exchange}) · last traded price`;
    $('#ticket-symbol').value = symbol;
    $('#ticket-exchange').value = exchange;
    ensureChart();
    state.series.setData([]);
    state.chartTime = 0;
    $('#chart').dataset.points = '0';
    renderWatchlist();
  }

  function ensureChart() {
    if (state.chart || !window.LightweightCharts) return;
    state.chart = window.LightweightCharts.createChart($('#chart'), {
      autoSize: true,
      layout: { background: { color: '#ffffff' }, textColor: '#1c2128' },
      grid: { vertLines: { color: '#eef0f3' }, horzLines: { color: '#eef0f3' } },
      timeScale: { timeVisible: true, secondsVisible: true },
    });
    state.series = state.chart.addLineSeries({ color: '#1f6feb', lineWidth: 2 });
  }

  function plot(ltp, timestampMs) {
    if (!state.series) return;
    const time = Math.floor((timestampMs || Date.now()) / 1000);
    const chart = $('#chart');
    if (time > state.chartTime) {
      state.chartTime = time;
      chart.dataset.points = String(Number(chart.dataset.points) + 1);
    }
    // One point per second: a later tick in the same second replaces the point.
    state.series.update({ time: state.chartTime, value: ltp });
  }

  function marketUrl() {
    const config = state.config || {};
    if (config.websocket_url) return config.websocket_url;
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${window.location.hostname}:${config.websocket_port}`;
  }

  function connectMarket() {
    setBadge('#market-state', 'connecting', 'market data: connecting');
    let socket;
    try {
      socket = new WebSocket(marketUrl());
    } catch (error) {
      setBadge('#market-state', 'disconnected', `market data: ${error.message}`);
      return;
    }
    state.market = socket;
    socket.onopen = () => socket.send(JSON.stringify({ action: 'authenticate', api_key: state.key }));
    socket.onmessage = (message) => {
      let data;
      try { data = JSON.parse(message.data); } catch { return; }
      onMarketMessage(data);
    };
    socket.onclose = (event) => {
      state.market = null;
      if (!state.key) return;
      const delay = Math.min(5000, 500 * 2 ** state.marketRetry);
      state.marketRetry += 1;
      setBadge('#market-state', 'reconnecting', `market data: reconnecting (closed ${event.code})`);
      state.marketTimer = setTimeout(connectMarket, delay);
    };
  }

  function send(message) {
    if (state.market && state.market.readyState === WebSocket.OPEN) state.market.send(JSON.stringify(message));
  }

  /** LTP and Quote: a feed that publishes only LTP ticks still moves the price. */
  function subscribe(symbols) {
    if (!symbols.length) return;
    send({ action: 'subscribe', symbols, mode: 1 });
    send({ action: 'subscribe', symbols, mode: 2 });
  }

  function onMarketMessage(data) {
    if (data.type === 'auth') {
      if (data.status === 'success') {
        state.marketRetry = 0;
        setBadge('#market-state', 'connected', 'market data: connected');
        subscribe(state.watch.map(({ exchange, symbol }) => ({ exchange, symbol })));
      } else {
        setBadge('#market-state', 'disconnected', `market data: ${data.message || 'refused'}`);
      }
      return;
    }
    if (data.type !== 'market_data') return;
    const tick = data.data || {};
    const ltp = Number(tick.ltp);
    if (!Number.isFinite(ltp)) return;
    const key = symbolKey(data.exchange, data.symbol);
    const close = Number(tick.close);
    const quote = { ltp };
    if (Number.isFinite(close) && close > 0) {
      quote.change = ltp - close;
      quote.changePercent = (quote.change / close) * 100;
    } else {
      const previous = state.quotes.get(key);
      if (previous && previous.change !== undefined) {
        quote.change = previous.change + (ltp - previous.ltp);
        quote.changePercent = previous.changePercent;
      }
    }
    state.quotes.set(key, quote);
    if (key === state.selected) plot(ltp, tick.timestamp);
    updateWatchRow(key, quote);
  }

  function updateWatchRow(key, quote) {
    const tr = [...document.querySelectorAll('#watch-rows tr')].find((candidate) => candidate.dataset.symbol === key);
    if (!tr) return;
    tr.children[1].textContent = quote.ltp;
    if (quote.change !== undefined) {
      tr.children[2].textContent = `${quote.change.toFixed(2)} (${quote.changePercent.toFixed(2)}%)`;
      tr.children[2].className = quote.change > 0 ? 'up' : quote.change < 0 ? 'down' : '';
    }
  }

  // ---- system (/health) --------------------------------------------------------------

  function pollSystem() {
    clearInterval(state.systemTimer);
    refreshSystem();
    state.systemTimer = setInterval(refreshSystem, 3000);
  }

  async function refreshSystem() {
    let health;
    try {
      const response = await fetch(new URL('health', base));
      health = await response.json();
    } catch (error) {
      $('#system').replaceChildren(element('dt', 'server'), element('dd', `unreachable (${error.message})`, 'error'));
      $('#sink-rows').replaceChildren();
      return;
    }
    const pairs = [
      ['status', health.status],
      ['event mode', health.order_event_mode],
      ['uptime', `${health.uptime_seconds ?? 0} s`],
      ['layers', Object.entries(health.layers || {}).filter(([, on]) => on).map(([name]) => name).join(', ')],
    ];
    if (health.engine && health.engine.reason) pairs.push(['order engine', `writes stopped: ${health.engine.reason}`]);
    if (health.kafka) {
      pairs.push(['kafka relay', health.kafka.connected ? 'connected' : 'not connected']);
      pairs.push(['outbox backlog', health.kafka.outbox_backlog]);
      pairs.push(['kafka delivered', health.kafka.delivered]);
      if (health.kafka.last_error) pairs.push(['kafka last error', health.kafka.last_error]);
    }
    const list = $('#system');
    list.replaceChildren();
    for (const [label, value] of pairs) {
      const dd = element('dd', value ?? '');
      dd.dataset.field = label.replace(/ /g, '_');
      list.append(element('dt', label), dd);
    }
    const sinks = (health.event_sinks || []).map((sink) => row([sink.name, sink.queued, sink.delivered, sink.dropped]));
    $('#sink-rows').replaceChildren(...sinks);
  }

  // ---- wiring ------------------------------------------------------------------------

  function start() {
    $('#signin-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const key = $('#apikey').value.trim();
      if (!key) { showSignIn('Enter your API key.'); return; }
      signIn(key, false);
    });
    $('#sign-out').addEventListener('click', () => signOut(''));
    $('#analyzer-toggle').addEventListener('change', toggleAnalyzer);
    $('#ticket-form').addEventListener('submit', submitTicket);
    $('#ticket-reset').addEventListener('click', resetTicket);
    $('#search-form').addEventListener('submit', search);
    const stored = storage.getItem(STORAGE_KEY);
    if (stored) signIn(stored, true); else showSignIn('');
  }

  start();
})();
