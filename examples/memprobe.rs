use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}
#[global_allocator]
static A: Counting = Counting;
fn mb() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / 1e6
}
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let t = Instant::now();
    let mut m = knative_xds::sources::manifests::Manifests::new(&dir);
    m.reload().unwrap();
    println!("manifests loaded: {:.1} MB live, {:?}", mb(), t.elapsed());
    {
        let a = mb();
        let s2 = m.store.clone();
        println!("  store clone: {:.1} MB", mb() - a);
        let a = mb();
        let r: Vec<_> = s2.revisions.values().cloned().collect();
        println!("  revisions {} : {:.1} MB", r.len(), mb() - a);
        let a = mb();
        let r: Vec<_> = s2.endpoint_slices.values().cloned().collect();
        println!("  slices {} : {:.1} MB", r.len(), mb() - a);
        let a = mb();
        let r: Vec<_> = s2.services.values().cloned().collect();
        println!("  services {} : {:.1} MB", r.len(), mb() - a);
        let a = mb();
        let r: Vec<_> = s2.kservices.values().cloned().collect();
        println!("  ksvc {} : {:.1} MB", r.len(), mb() - a);
    }
    let opts = knative_xds::translate::Options::default();
    let mut tr = knative_xds::translate::Translator::new(opts.clone());
    let t = Instant::now();
    let out = tr.translate_ingresses(&m.store);
    println!("translated: {:.1} MB live, {:?}", mb(), t.elapsed());
    {
        let a = mb();
        let deep: Vec<knative_xds::translate::Ingress> =
            out.ingresses.iter().map(|i| (**i).clone()).collect();
        println!("  ingress IR ({}): {:.1} MB", deep.len(), mb() - a);
    }
    let t = Instant::now();
    let mut b = knative_xds::xds::build::IncrementalBuilder::new();
    let snap = b.build(&out.ingresses, &m.store, &opts.listeners, true);
    println!(
        "built snapshot ({} resources): {:.1} MB live, {:?}",
        snap.len(),
        mb(),
        t.elapsed()
    );
    let bytes: usize = knative_xds::xds::ResourceType::ORDERED
        .iter()
        .flat_map(|t| snap.resources(*t).values())
        .map(|r| r.value.len())
        .sum();
    println!("  encoded bytes total {:.1} MB", bytes as f64 / 1e6);
    for t in knative_xds::xds::ResourceType::ORDERED {
        let m = snap.resources(t);
        let b: usize = m.values().map(|r| r.value.len()).sum();
        let mid = m.values().nth(m.len() / 2).unwrap();
        println!(
            "  {:?}: {} resources, {:.1} MB, e.g. {} {} bytes",
            t,
            m.len(),
            b as f64 / 1e6,
            mid.name,
            mid.value.len()
        );
    }
    drop(b);
    println!("dropped builder+view: {:.1} MB live", mb());
    drop(snap);
    drop(out);
    drop(tr);
    println!("dropped translator+snapshot: {:.1} MB live", mb());
    drop(m);
    println!("all dropped: {:.1} MB live", mb());
}
