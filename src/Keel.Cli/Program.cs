System.Console.WriteLine("keel");
