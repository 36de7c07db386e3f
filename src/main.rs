//! The `pipe` command line.

mod stages;

fn main() {
    let registry = stages::registry();
    for kind in registry.kinds() {
        println!("{kind}");
    }
}
