"""kohler deblurring dataset (manual download). Builder: `kohler_dataset_builder.Builder`."""
