fn main() {
    eprintln!("{}", sink::NOT_YET_BUILT);
    std::process::exit(2);
}
