fn main() {
    eprintln!("{}", processor::NOT_YET_BUILT);
    std::process::exit(2);
}
