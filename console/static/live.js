// The Live page: follows /live/events (server-sent events) with the page's own filters and
// puts each decision at the top of the table, keeping the newest 500.
(function () {
  var table = document.querySelector('#live tbody');
  var admin = document.getElementById('live').dataset.admin === 'true';
  var state = document.getElementById('state');
  var es = new EventSource('/live/events' + location.search);
  function cell(tr, text) { var td = document.createElement('td'); td.textContent = text || ''; tr.appendChild(td); return td; }
  es.onopen = function () { state.textContent = 'following'; };
  es.onerror = function () { state.textContent = 'disconnected; retrying…'; };
  es.addEventListener('cut', function (ev) { state.textContent = ev.data + '; reconnecting…'; });
  es.addEventListener('dropped', function (ev) { state.textContent = 'following (' + ev.data + ' records skipped: too many to show)'; });
  es.onmessage = function (ev) {
    var e = JSON.parse(ev.data);
    var tr = document.createElement('tr');
    if (e.verdict) { tr.className = e.verdict; }
    cell(tr, e.time);
    cell(tr, e.device ? e.device + ' ' + e.client : e.client);
    cell(tr, e.kind);
    cell(tr, e.name ? (e.port ? e.name + ':' + e.port : e.name) : e.change);
    cell(tr, e.verdict);
    cell(tr, e.rule || e.reason);
    var act = cell(tr, '');
    if (e.allow && admin) {
      var a = document.createElement('a');
      a.href = e.allow; a.textContent = 'allow'; a.className = 'allow';
      act.appendChild(a);
    }
    table.insertBefore(tr, table.firstChild);
    while (table.rows.length > 500) { table.deleteRow(table.rows.length - 1); }
  };
})();
