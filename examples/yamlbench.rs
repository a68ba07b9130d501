use std::time::Instant;
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let mut texts = Vec::new();
    for e in walk(std::path::Path::new(&dir)) {
        texts.push(std::fs::read_to_string(e).unwrap());
    }
    let t = Instant::now();
    let mut n = 0;
    for s in &texts {
        for d in serde_yaml::Deserializer::from_str(s) {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).unwrap();
            if !v.is_null() {
                n += 1;
            }
        }
    }
    println!("value parse: {:?} docs={n}", t.elapsed());
    let t = Instant::now();
    let mut objs = Vec::new();
    for (i, s) in texts.iter().enumerate() {
        objs.extend(
            knative_xds::sources::manifests::parse_file(std::path::Path::new(&format!("{i}")), s)
                .unwrap(),
        );
    }
    println!("parse_file: {:?} objs={}", t.elapsed(), objs.len());
    par(&texts);
}
fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            v.extend(walk(&e));
        } else {
            v.push(e);
        }
    }
    v
}
#[allow(dead_code)]
fn par(texts: &[String]) {
    let t = Instant::now();
    let half = texts.len() / 2;
    let (a, b) = texts.split_at(half);
    std::thread::scope(|s| {
        let h1 = s.spawn(|| {
            a.iter()
                .enumerate()
                .map(|(i, t)| {
                    knative_xds::sources::manifests::parse_file(
                        std::path::Path::new(&format!("{i}")),
                        t,
                    )
                    .unwrap()
                    .len()
                })
                .sum::<usize>()
        });
        let h2 = s.spawn(|| {
            b.iter()
                .enumerate()
                .map(|(i, t)| {
                    knative_xds::sources::manifests::parse_file(
                        std::path::Path::new(&format!("{i}")),
                        t,
                    )
                    .unwrap()
                    .len()
                })
                .sum::<usize>()
        });
        println!("par objs {}", h1.join().unwrap() + h2.join().unwrap());
    });
    println!("parallel parse_file: {:?}", t.elapsed());
}
