pub fn _x(){}
pub mod pg;
pub mod smtp;
