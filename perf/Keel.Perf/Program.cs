using BenchmarkDotNet.Running;

// Pick benchmarks on the command line, for example:
//   dotnet run -c Release --project perf/Keel.Perf -- --filter '*Gemm*' --job short
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
