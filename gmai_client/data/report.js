// report.html's script, inlined into the page by html_report.py (the page fetches nothing).
// Kept small and defensive: every lookup tolerates a missing section (one-model runs have no heatmap,
// keyless runs no charts) so that no run can produce a console error. Without it everything is shown.
(function(){
  'use strict';
  document.querySelectorAll('.js-only').forEach(function(el){el.hidden=false;});
  var cards=Array.prototype.slice.call(document.querySelectorAll('.gallery .card'));
  var filter='all', model='any', count=document.getElementById('gallery-count');
  var nModels=document.querySelectorAll('#gallery-model option').length-1;
  function list(card,kind){var v=card.getAttribute('data-'+kind)||'';return v?v.split(' '):[];}
  function apply(){
    var shown=0;
    cards.forEach(function(card){
      var ok=true;
      if(filter!=='all'){
        var hits=list(card,filter);
        if(model==='any'){ok=filter==='correct'?hits.length===nModels:hits.length>0;}
        else{ok=hits.indexOf(model)>=0;}
      }else if(model!=='any'){
        ok=['wrong','unparsed','errored','correct','answered'].some(function(k){
          return list(card,k).indexOf(model)>=0;});
      }
      card.hidden=!ok; if(ok){shown++;}
    });
    if(count){count.textContent=shown+' of '+cards.length+' shown';}
  }
  document.querySelectorAll('#gallery-filters button[data-filter]').forEach(function(btn){
    btn.addEventListener('click',function(){
      filter=btn.getAttribute('data-filter');
      document.querySelectorAll('#gallery-filters button[data-filter]').forEach(function(b){
        b.setAttribute('aria-pressed',b===btn?'true':'false');});
      apply();
    });
  });
  var sel=document.getElementById('gallery-model');
  if(sel){sel.addEventListener('change',function(){model=sel.value;apply();});}
  if(cards.length){apply();}
  var ref=document.getElementById('hm-ref');
  function deltas(){
    if(!ref){return;}
    var col=parseInt(ref.value,10);
    document.querySelectorAll('table.heat').forEach(function(table){
      table.querySelectorAll('thead th').forEach(function(th,i){
        if(i===0){return;}
        th.textContent=th.textContent.replace(/ \(reference\)$/,'')+(i-1===col?' (reference)':'');
      });
      table.querySelectorAll('tbody tr').forEach(function(tr){
        var cells=tr.querySelectorAll('td.hm'), base=cells[col]&&cells[col].getAttribute('data-acc');
        cells.forEach(function(td,i){
          var d=td.querySelector('.d'), a=td.getAttribute('data-acc');
          if(!d){return;}
          d.className='d'; d.textContent='';
          if(i===col||a===null||base===null||base===undefined){return;}
          var v=100*(parseFloat(a)-parseFloat(base));
          d.textContent=(v>=0?'+':'')+v.toFixed(2);
          if(v>0){d.className='d up';}else if(v<0){d.className='d down';}
        });
      });
    });
  }
  if(ref){ref.addEventListener('change',deltas);}
  document.querySelectorAll('button[data-tree]').forEach(function(btn){
    btn.addEventListener('click',function(){
      var open=btn.getAttribute('data-tree')==='open';
      document.querySelectorAll('#tree details').forEach(function(d){d.open=open;});
    });
  });
})();
