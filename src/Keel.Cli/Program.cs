using Keel.Cli;

return KeelCli.Run(args, Console.Out, Console.Error);
